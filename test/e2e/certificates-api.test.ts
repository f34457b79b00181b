/**
 * The broker as CA for its callers (issue 20), over real gRPC + mTLS on SoftHSM2: an org CA in
 * the HSM (ECDSA P-256) and one wrapped by it (ML-DSA-65); a service gets certificates from CSRs
 * and calls Encrypt with them; renews its own before expiry; a revoked certificate is refused on
 * fresh and open connections; bad CSRs and cross-tenant/cross-org requests are refused; chains
 * verify with `openssl verify` (ECDSA) and @peculiar/x509 (ML-DSA); issue/revoke are audited.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import type { PemPair } from '../../daemon/src/tls/dev-pki.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode, runCli } from './e2e-helpers.ts';

x509.cryptoProvider.set(globalThis.crypto);

type R = Record<string, unknown>;
type KeyAlg = 'ecdsa-p256' | 'mldsa65';
let d: DaemonHandle;
let admin: KeybrokerClient;
let service: KeybrokerClient;
/** Kept for the restart test: a revoked and a valid broker-issued identity. */
const kept: { revoked?: PemPair; valid?: PemPair } = {};
const tmp = mkdtempSync(join(tmpdir(), 'kb-certs-'));

before(async () => {
  d = await startDaemon();
  admin = d.client('admin');
  service = d.client('service');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
  rmSync(tmp, { recursive: true, force: true });
});

const PARAMS = {
  'ecdsa-p256': { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  mldsa65: { name: 'ML-DSA-65' },
} as const;

function pem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
}

/** A key pair and a CSR for it, with the given SAN URIs / DNS names and extra extensions. */
async function csrFor(
  alg: KeyAlg,
  o: { uris?: string[]; dns?: string[]; ca?: boolean } = {},
): Promise<{ csrPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(PARAMS[alg], true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [
    ...(o.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=app',
    keys,
    signingAlgorithm: PARAMS[alg],
    extensions: [
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ...(o.ca === true ? [new x509.BasicConstraintsExtension(true, 0, true)] : []),
    ],
  });
  const keyPem = pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { csrPem: csr.toString('pem'), keyPem };
}

/** Issue through `client`; returns the pair to connect with (chain = leaf + CA) and the response. */
async function issue(
  client: KeybrokerClient,
  alg: KeyAlg,
  req: R = {},
  csr: { uris?: string[] } = { uris: ['spiffe://acme/alpha/app'] },
): Promise<{ pair: PemPair; res: R }> {
  const { csrPem, keyPem } = await csrFor(alg, csr);
  const res = await client.certificates.unary<R>('IssueCertificate', { csrPem, ...req });
  return { pair: { certPem: String(res.certificatePem) + String(res.caCertificatePem), keyPem }, res };
}

const encrypt = (c: KeybrokerClient) =>
  c.crypto.unary<R>('Encrypt', { plaintext: Buffer.from('hello'), aad: Buffer.alloc(0) });

test('CreateCa: admins only; ECDSA P-256 generation 1 in the HSM', async () => {
  await expectCode(
    service.certificates.unary('CreateCa', { org: 'acme', algorithm: 'CA_ALGORITHM_ECDSA_P256' }),
    GrpcCode.PERMISSION_DENIED,
    'service creates a CA',
  );
  await expectCode(
    admin.certificates.unary('CreateCa', { org: 'acme', algorithm: 'CA_ALGORITHM_UNSPECIFIED' }),
    GrpcCode.INVALID_ARGUMENT,
    'no algorithm',
  );
  await expectCode(
    admin.certificates.unary('CreateCa', { org: 'other', algorithm: 'CA_ALGORITHM_ECDSA_P256' }),
    GrpcCode.PERMISSION_DENIED,
    'admin creates a CA for another org',
  );
  const r = await admin.certificates.unary<R>('CreateCa', {
    org: 'acme',
    algorithm: 'CA_ALGORITHM_ECDSA_P256',
  });
  const ca = r.ca as R;
  assert.equal(ca.generation, 1, 'first generation');
  assert.equal(ca.algorithm, 'CA_ALGORITHM_ECDSA_P256');
  const cert = new X509Certificate(String(ca.certificatePem));
  assert.ok(cert.ca, 'CA flag');
  assert.ok(cert.verify(cert.publicKey), 'self-signed, signature verifies');
});

for (const alg of ['ecdsa-p256', 'mldsa65'] as const) {
  test(`a service renews its own identity with a ${alg} key, calls Encrypt with it, chain verifies`, async () => {
    const { pair, res } = await issue(service, alg);
    const leaf = new X509Certificate(String(res.certificatePem));
    assert.equal(leaf.subjectAltName, 'URI:spiffe://acme/alpha/app', 'exactly the caller URI');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth EKU only');
    assert.equal(leaf.ca, false, 'no CA flag');
    const lifetime = leaf.validToDate.getTime() - Date.now();
    assert.ok(
      lifetime > 23.9 * 3600_000 && lifetime <= 24 * 3600_000,
      `default lifetime 24 h, got ${lifetime} ms`,
    );
    assert.equal(leaf.serialNumber, res.serial, 'serial reported');
    const c = d.client(pair);
    assert.ok((await encrypt(c)).ciphertext, 'Encrypt with the issued certificate');
    if (alg === 'ecdsa-p256') {
      // The host's openssl CLI (3.0) cannot read ML-DSA keys; those chains are checked below.
      writeFileSync(join(tmp, 'ca.pem'), String(res.caCertificatePem));
      writeFileSync(join(tmp, 'leaf.pem'), String(res.certificatePem));
      const out = execFileSync(
        'openssl',
        ['verify', '-purpose', 'sslclient', '-CAfile', join(tmp, 'ca.pem'), join(tmp, 'leaf.pem')],
        { encoding: 'utf8' },
      );
      assert.match(out, /leaf\.pem: OK/, 'openssl verify');
    }
    const caCert = new x509.X509Certificate(String(res.caCertificatePem));
    assert.ok(
      await new x509.X509Certificate(String(res.certificatePem)).verify({
        publicKey: caCert,
        signatureOnly: true,
      }),
      '@peculiar/x509 verifies the leaf against the CA',
    );
  });
}

test('renewal before expiry with the broker-issued certificate itself; both keep working', async () => {
  const first = await issue(service, 'ecdsa-p256', { lifetimeSeconds: 120 });
  const c1 = d.client(first.pair);
  const second = await issue(c1, 'ecdsa-p256', {}, {});
  assert.notEqual(second.res.serial, first.res.serial, 'new serial');
  const leaf = new X509Certificate(String(second.res.certificatePem));
  assert.equal(leaf.subjectAltName, 'URI:spiffe://acme/alpha/app', 'same SAN');
  assert.ok((await encrypt(d.client(second.pair))).ciphertext, 'renewed certificate works');
  assert.ok((await encrypt(c1)).ciphertext, 'the old one until it expires');
});

test('revoked: refused at once on the open connection and on a fresh one; others keep working', async () => {
  const victim = await issue(service, 'mldsa65');
  const other = await issue(service, 'mldsa65');
  const open = d.client(victim.pair);
  const openOther = d.client(other.pair);
  kept.revoked = victim.pair;
  kept.valid = other.pair;
  assert.ok((await encrypt(open)).ciphertext, 'victim before');
  assert.ok((await encrypt(openOther)).ciphertext, 'other before');
  await expectCode(
    service.certificates.unary('RevokeCertificate', { org: 'acme', serial: victim.res.serial }),
    GrpcCode.PERMISSION_DENIED,
    'a service revokes',
  );
  const r = await admin.certificates.unary<R>('RevokeCertificate', {
    org: 'acme',
    serial: String(victim.res.serial).toLowerCase(),
  });
  assert.equal(r.identity, 'spiffe://acme/alpha/app');
  const e = await expectCode(encrypt(open), GrpcCode.UNAUTHENTICATED, 'revoked, open connection');
  assert.match(e.details, /revoked/);
  await expectCode(encrypt(d.client(victim.pair)), GrpcCode.UNAUTHENTICATED, 'revoked, fresh connection');
  assert.ok((await encrypt(openOther)).ciphertext, 'other, open connection');
  assert.ok((await encrypt(d.client(other.pair))).ciphertext, 'other, fresh connection');
  await expectCode(
    admin.certificates.unary('RevokeCertificate', { org: 'acme', serial: victim.res.serial }),
    GrpcCode.FAILED_PRECONDITION,
    'revoked twice',
  );
  await expectCode(
    admin.certificates.unary('RevokeCertificate', { org: 'acme', serial: 'ABCDEF' }),
    GrpcCode.NOT_FOUND,
    'unknown serial',
  );
  const list = await admin.certificates.unary<R>('ListCertificates', { org: 'acme' });
  const row = (list.certificates as R[]).find((c) => c.serial === victim.res.serial);
  assert.equal(row?.revoked, true, 'listed as revoked');
  assert.equal(row?.keyAlgorithm, 'mldsa65');
});

test('a broker-issued certificate that expires is refused on its open connection', async () => {
  const { pair, res } = await issue(service, 'ecdsa-p256', { lifetimeSeconds: 3 });
  const c = d.client(pair);
  assert.ok((await encrypt(c)).ciphertext, 'works before notAfter');
  await new Promise((r) => setTimeout(r, Math.max(0, Number(res.notAfterUnixMs) - Date.now()) + 1200));
  const e = await expectCode(encrypt(c), GrpcCode.UNAUTHENTICATED, 'same connection after notAfter');
  assert.match(e.details, /expired/);
});

test('bad requests: other tenant, two URIs, CA flag, DNS name, lifetime over policy, bad CSRs', async () => {
  const tamper = async () => {
    const { csrPem } = await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app'] });
    const c = new x509.Pkcs10CertificateRequest(csrPem);
    const der = new Uint8Array(c.rawData);
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 1; // inside the signature
    return pem(der.buffer, 'CERTIFICATE REQUEST');
  };
  const cases: [string, KeybrokerClient, () => Promise<R>, number, RegExp][] = [
    [
      'another tenant',
      service,
      async () => ({ csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/beta/app'] })).csrPem }),
      GrpcCode.PERMISSION_DENIED,
      /own identity/,
    ],
    [
      'another tenant by field',
      service,
      async () => ({ csrPem: (await csrFor('mldsa65')).csrPem, identity: 'spiffe://acme/beta/app' }),
      GrpcCode.PERMISSION_DENIED,
      /own identity/,
    ],
    [
      'another org (admin)',
      admin,
      async () => ({ csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://other/alpha/app'] })).csrPem }),
      GrpcCode.PERMISSION_DENIED,
      /another org/,
    ],
    [
      'no such tenant (admin)',
      admin,
      async () => ({ csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/nope/app'] })).csrPem }),
      GrpcCode.NOT_FOUND,
      /not found/,
    ],
    [
      'two URIs',
      service,
      async () => ({
        csrPem: (
          await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app', 'spiffe://acme/alpha/app2'] })
        ).csrPem,
      }),
      GrpcCode.INVALID_ARGUMENT,
      /exactly one/,
    ],
    [
      'CA flag',
      service,
      async () => ({
        csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app'], ca: true })).csrPem,
      }),
      GrpcCode.INVALID_ARGUMENT,
      /CA certificate/,
    ],
    [
      'DNS name',
      service,
      async () => ({
        csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app'], dns: ['evil.example'] }))
          .csrPem,
      }),
      GrpcCode.INVALID_ARGUMENT,
      /only a spiffe/,
    ],
    [
      'bad URI grammar',
      admin,
      async () => ({ csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/Alpha/app'] })).csrPem }),
      GrpcCode.INVALID_ARGUMENT,
      /identity must be/,
    ],
    [
      'URI and field disagree',
      service,
      async () => ({
        csrPem: (await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app'] })).csrPem,
        identity: 'spiffe://acme/alpha/other',
      }),
      GrpcCode.INVALID_ARGUMENT,
      /different URIs/,
    ],
    [
      'lifetime over policy',
      service,
      async () => ({ csrPem: (await csrFor('ecdsa-p256')).csrPem, lifetimeSeconds: 8 * 86400 }),
      GrpcCode.INVALID_ARGUMENT,
      /lifetime_seconds/,
    ],
    [
      'tampered CSR signature',
      service,
      async () => ({ csrPem: await tamper() }),
      GrpcCode.INVALID_ARGUMENT,
      /does not verify/,
    ],
    [
      'not a CSR',
      service,
      () =>
        Promise.resolve({
          csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
        }),
      GrpcCode.INVALID_ARGUMENT,
      /PKCS#10/,
    ],
    ['empty', service, () => Promise.resolve({ csrPem: '' }), GrpcCode.INVALID_ARGUMENT, /csr_pem/],
    [
      'huge',
      service,
      () => Promise.resolve({ csrPem: 'x'.repeat(40_000) }),
      GrpcCode.INVALID_ARGUMENT,
      /too large/,
    ],
  ];
  for (const [name, client, req, code, why] of cases) {
    const e = await expectCode(client.certificates.unary('IssueCertificate', await req()), code, name);
    assert.match(e.details, why, `${name}: message`);
  }
  const before = (await admin.certificates.unary<R>('ListCertificates', { org: 'acme' })).certificates as R[];
  assert.ok(!before.some((c) => String(c.identity).includes('beta')), 'nothing was issued for beta');
});

test("cross-tenant and cross-org: services and other orgs' admins cannot list or revoke", async () => {
  const otherAdmin = d.client(await d.issueClient('spiffe://other/admin/root'));
  await expectCode(
    otherAdmin.certificates.unary('ListCertificates', { org: 'acme' }),
    GrpcCode.PERMISSION_DENIED,
    'other org lists acme',
  );
  await expectCode(
    otherAdmin.certificates.unary('GetCa', { org: 'acme' }),
    GrpcCode.PERMISSION_DENIED,
    'other org gets acme CA',
  );
  await expectCode(
    service.certificates.unary('ListCertificates', { org: 'acme' }),
    GrpcCode.PERMISSION_DENIED,
    'service lists',
  );
  const beta = d.client(await d.issueClient('spiffe://acme/beta/app'));
  const { csrPem } = await csrFor('ecdsa-p256', { uris: ['spiffe://acme/alpha/app'] });
  await expectCode(
    beta.certificates.unary('IssueCertificate', { csrPem }),
    GrpcCode.PERMISSION_DENIED,
    'beta asks for alpha',
  );
  const e = await expectCode(
    otherAdmin.certificates.unary('IssueCertificate', { csrPem }),
    GrpcCode.PERMISSION_DENIED,
    'other org admin asks for an acme identity',
  );
  assert.match(e.details, /another org/);
});

test('CA rotation to ML-DSA-65: new generation issues, the ECDSA generation stays trusted', async () => {
  const old = await issue(service, 'ecdsa-p256');
  const r = await admin.certificates.unary<R>('CreateCa', {
    org: 'acme',
    algorithm: 'CA_ALGORITHM_ML_DSA_65',
  });
  assert.equal((r.ca as R).generation, 2);
  const { pair, res } = await issue(service, 'mldsa65');
  assert.equal(res.caGeneration, 2, 'issued by the new generation');
  const caCert = new x509.X509Certificate(String(res.caCertificatePem));
  const leaf = new x509.X509Certificate(String(res.certificatePem));
  assert.equal(new X509Certificate(String(res.certificatePem)).publicKey.asymmetricKeyType, 'ml-dsa-65');
  assert.equal(caCert.publicKey.algorithm.name, 'ML-DSA-65', 'ML-DSA-65 CA key');
  assert.ok(
    await leaf.verify({ publicKey: caCert, signatureOnly: true }),
    '@peculiar/x509 verifies the chain',
  );
  assert.ok(await caCert.verify({ signatureOnly: true }), 'self-signed ML-DSA CA verifies');
  assert.ok((await encrypt(d.client(pair))).ciphertext, 'ML-DSA chain over TLS 1.3');
  assert.ok((await encrypt(d.client(old.pair))).ciphertext, 'generation 1 certificate still works');

  const ca = await service.certificates.unary<R>('GetCa', {});
  const cas = ca.cas as R[];
  assert.deepEqual(
    cas.map((c) => c.algorithm),
    ['CA_ALGORITHM_ECDSA_P256', 'CA_ALGORITHM_ML_DSA_65'],
  );
  const crls = (ca.crlPems as string[]).map((p) => new x509.X509Crl(p));
  assert.equal(crls.length, 2, 'one CRL per generation');
  for (const [i, crl] of crls.entries()) {
    const signer = new x509.X509Certificate(String(cas[i]?.certificatePem));
    assert.ok(await crl.verify({ publicKey: signer }), `CRL ${i + 1} verifies against its CA`);
  }
  assert.equal(crls[1]?.entries.length, 0, 'no revocation under generation 2');
  assert.ok((crls[0]?.entries.length ?? 0) >= 1, 'the earlier revocation is in generation 1 CRL');
});

test('issue and revoke are audited with serial and identity', async () => {
  const text = readFileSync(join(d.dataDir, 'audit/audit.log'), 'utf8');
  const recs = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as R)
    .filter((r) => typeof r.rpc === 'string' && r.rpc.startsWith('keybroker.v1.Certificates/'));
  const issued = recs.filter(
    (r) => r.rpc === 'keybroker.v1.Certificates/IssueCertificate' && r.result === 'ok',
  );
  assert.ok(issued.length >= 5, `issue records: ${issued.length}`);
  assert.match(String(issued[0]?.reason), /^issued [0-9A-F]+ for spiffe:\/\/acme\/alpha\/app until /);
  const revoked = recs.find(
    (r) => r.rpc === 'keybroker.v1.Certificates/RevokeCertificate' && r.result === 'ok',
  );
  assert.match(String(revoked?.reason), /^revoked [0-9A-F]+ of spiffe:\/\/acme\/alpha\/app$/);
  assert.ok(
    recs.some((r) => r.rpc === 'keybroker.v1.Certificates/IssueCertificate' && r.result === 'denied'),
    'refusals audited too',
  );
});

test('CLI: cert ca get, issue, renew (timer mode and forced), list, revoke', async () => {
  const dd = ['--data-dir', d.dataDir];
  const ok = (args: string[]) => {
    const r = runCli(...args, ...dd);
    assert.equal(r.status, 0, `keybroker ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as R;
  };
  const bundle = join(tmp, 'bundle.pem');
  const crl = join(tmp, 'crl.pem');
  const got = ok(['cert', 'ca', 'get', 'acme', '--bundle-out', bundle, '--crl-out', crl]);
  assert.equal((got.cas as R[]).length, 2, 'two generations');
  assert.equal(readFileSync(bundle, 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 2, 'bundle file');
  assert.equal(readFileSync(crl, 'utf8').match(/BEGIN X509 CRL/g)?.length, 2, 'CRL file');

  const cert = join(tmp, 'cli.pem');
  const key = join(tmp, 'cli-key.pem');
  const issued = ok([
    'cert',
    'issue',
    'spiffe://acme/alpha/cli',
    '--cert-out',
    cert,
    '--key-out',
    key,
    '--algorithm',
    'mldsa65',
  ]);
  assert.equal(statSync(key).mode & 0o777, 0o600, 'key file 0600');
  const pair = { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  assert.ok((await encrypt(d.client(pair))).ciphertext, 'CLI-issued certificate works');

  const idle = ok(['cert', 'renew', '--cert', cert, '--key', key, '--if-expires-within-hours', '4']);
  assert.equal(idle.renewed, false, 'timer mode: 24 h left, nothing to do');
  const renewed = ok(['cert', 'renew', '--cert', cert, '--key', key, '--if-expires-within-hours', '48']);
  assert.notEqual(renewed.serial, issued.serial, 'renewed: new serial');
  const now = { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  assert.notEqual(now.keyPem, pair.keyPem, 'new key');
  assert.equal(new X509Certificate(now.certPem).subjectAltName, 'URI:spiffe://acme/alpha/cli', 'same SAN');
  assert.ok((await encrypt(d.client(now))).ciphertext, 'renewed certificate works');

  const listed = ok(['cert', 'list', 'acme', '--identity', 'spiffe://acme/alpha/cli']);
  assert.deepEqual(
    (listed.certificates as R[]).map((c) => c.serial),
    [renewed.serial, issued.serial],
    'both, newest first',
  );
  ok(['cert', 'revoke', 'acme', String(issued.serial)]);
  await expectCode(encrypt(d.client(pair)), GrpcCode.UNAUTHENTICATED, 'CLI-revoked certificate');
  const bad = runCli('cert', 'revoke', 'acme', String(issued.serial), ...dd);
  assert.equal(bad.status, 1, 'revoking twice fails');
  assert.match(bad.stderr, /already revoked/);
});

test('after a restart the org CAs are trusted again and revocations still hold', async () => {
  assert.equal(await d.stop(), 0, 'clean stop');
  d = await startDaemon({ dataDir: d.dataDir });
  assert.ok(kept.valid && kept.revoked);
  assert.ok(
    (await encrypt(d.client(kept.valid))).ciphertext,
    'valid broker-issued certificate after restart',
  );
  const e = await expectCode(
    encrypt(d.client(kept.revoked)),
    GrpcCode.UNAUTHENTICATED,
    'revoked after restart',
  );
  assert.match(e.details, /revoked/);
  const cas = (await d.client('admin').certificates.unary<R>('GetCa', { org: 'acme' })).cas as R[];
  assert.deepEqual(
    cas.map((c) => c.generation),
    [1, 2],
    'both generations reopened (HSM key and wrapped ML-DSA seed)',
  );
  const { res } = await issue(d.client('service'), 'mldsa65');
  assert.equal(res.caGeneration, 2, 'the ML-DSA generation signs after its seed was unwrapped again');
});
