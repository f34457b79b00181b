/**
 * Unit tests (no daemon) of the identity parser and the built-in authorizer: which SAN URIs
 * make which identity, and that every Admin/Crypto RPC is allowed or denied as documented.
 */
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { test } from 'node:test';
import { callerIdentityOf, parseSpiffeUri } from '../../daemon/src/api/caller-identity.ts';
import { DefaultAuthorizer } from '../../daemon/src/api/default-authorizer.ts';
import { peerRefusal } from '../../daemon/src/api/peer-identity.ts';
import { loadKeybrokerPackage } from '../../daemon/src/api/proto-definitions.ts';
import { KbError } from '../../daemon/src/errors.ts';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';

test('parseSpiffeUri: tenant services, org admins, and everything else refused', () => {
  const cases: [string, object | undefined][] = [
    ['spiffe://acme/alpha/app', { org: 'acme', tenant: 'alpha', service: 'app', roles: [] }],
    ['spiffe://acme/admin/alice', { org: 'acme', service: 'alice', roles: ['admin'] }],
    ['spiffe://acme/alpha', undefined],
    ['spiffe://acme/alpha/app/extra', undefined],
    ['spiffe://ACME/alpha/app', undefined],
    ['spiffe://acme/../app', undefined],
    ['spiffe://acme/alpha/', undefined],
    ['https://acme/alpha/app', undefined],
    ['spiffe://acme/al%70ha/app', undefined],
  ];
  for (const [uri, want] of cases) {
    const got = parseSpiffeUri(uri);
    if (want === undefined) assert.equal(got, undefined, `${uri} must be refused`);
    else assert.deepEqual({ ...got, uri: undefined }, { ...want, uri: undefined }, uri);
  }
});

test('callerIdentityOf: needs a certificate with the clientAuth EKU and exactly one spiffe URI', () => {
  const CLIENT = '1.3.6.1.5.5.7.3.2';
  const SERVER = '1.3.6.1.5.5.7.3.1';
  const cert = (san?: string, eku: string[] | null = [CLIENT]) =>
    ({
      raw: Buffer.from('x'),
      ...(san !== undefined ? { subjectaltname: san } : {}),
      ...(eku !== null ? { ext_key_usage: eku } : {}),
    }) as PeerCertificate;
  assert.equal(callerIdentityOf(cert('DNS:x, URI:spiffe://acme/alpha/app')).tenant, 'alpha');
  assert.equal(callerIdentityOf(cert('URI:spiffe://acme/alpha/app', [SERVER, CLIENT])).tenant, 'alpha');
  for (const [name, c, why] of [
    ['no certificate', undefined, /certificate is required/],
    ['empty certificate object', {} as PeerCertificate, /certificate is required/],
    ['no SAN', cert(), /exactly one spiffe/],
    [
      'two spiffe URIs',
      cert('URI:spiffe://acme/alpha/app, URI:spiffe://acme/beta/app'),
      /exactly one spiffe/,
    ],
    ['no EKU extension', cert('URI:spiffe://acme/admin/root', null), /clientAuth/],
    ['serverAuth only', cert('URI:spiffe://acme/admin/root', [SERVER]), /clientAuth/],
    ['anyExtendedKeyUsage only', cert('URI:spiffe://acme/admin/root', ['2.5.29.37.0']), /clientAuth/],
  ] as const) {
    assert.throws(
      () => callerIdentityOf(c),
      (e: unknown) => e instanceof KbError && e.code === 'UNAUTHENTICATED' && why.test(e.safeMessage),
      name,
    );
  }
});

test('peerRefusal: expired and revoked peers are refused, per call', () => {
  const identity = { uri: 'spiffe://acme/alpha/app', org: 'acme' as OrgId, service: 'app', roles: [] };
  const peer = { identity, issuer: 'CN=ca', serial: '0ABC', notAfterMs: 10_000 };
  const revoked = (issuer: string, serial: string) => issuer === 'CN=ca' && serial === '0ABC';
  const cases: [string, number, ((i: string, s: string) => boolean) | undefined, RegExp | undefined][] = [
    ['valid, nothing revoked', 9_999, undefined, undefined],
    ['valid, other serial revoked', 9_999, (_i, s) => s === 'FFFF', undefined],
    ['at notAfter', 10_000, undefined, /expired/],
    ['after notAfter', 20_000, revoked, /expired/],
    ['revoked', 5_000, revoked, /revoked/],
  ];
  for (const [name, now, check, want] of cases) {
    const got = peerRefusal(peer, now, check);
    if (want === undefined) assert.equal(got, undefined, name);
    else
      assert.ok(
        got?.code === 'UNAUTHENTICATED' && want.test(got.safeMessage),
        `${name}: got ${got?.safeMessage}`,
      );
  }
});

test('DefaultAuthorizer: every RPC of the proto, for admins, own-tenant services and strangers', () => {
  const pkg = loadKeybrokerPackage();
  const rpcs = (svc: string) =>
    Object.keys(pkg[`keybroker.v1.${svc}`] as object).map((m) => `keybroker.v1.${svc}/${m}`);
  const az = new DefaultAuthorizer();
  const acme = 'acme' as OrgId;
  const alpha = 'alpha' as TenantId;
  const admin = { uri: 'spiffe://acme/admin/a', org: acme, service: 'a', roles: ['admin'] as const };
  const service = { uri: 'spiffe://acme/alpha/app', org: acme, tenant: alpha, service: 'app', roles: [] };
  for (const rpc of rpcs('Admin')) {
    assert.equal(az.authorize({ identity: admin, rpc, org: acme }).allow, true, `admin -> ${rpc} own org`);
    assert.equal(
      az.authorize({ identity: admin, rpc, org: 'other' as OrgId }).allow,
      false,
      `admin -> ${rpc} other org`,
    );
    assert.equal(az.authorize({ identity: service, rpc, org: acme }).allow, false, `service -> ${rpc}`);
  }
  for (const rpc of rpcs('Crypto')) {
    assert.equal(
      az.authorize({ identity: service, rpc, org: acme, tenant: alpha }).allow,
      true,
      `service -> ${rpc}`,
    );
    assert.equal(
      az.authorize({ identity: service, rpc, org: acme, tenant: 'beta' as TenantId }).allow,
      false,
      `service -> ${rpc} other tenant`,
    );
    assert.equal(az.authorize({ identity: admin, rpc, org: acme }).allow, false, `admin -> ${rpc}`);
  }
  assert.equal(
    az.authorize({ identity: admin, rpc: 'keybroker.v1.Keys/Sign', org: acme }).allow,
    false,
    'unknown service',
  );
});
