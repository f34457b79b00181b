/**
 * keybroker.v1.Secrets against the real daemon (SoftHSM2, SQLite, gRPC + mTLS on 127.0.0.1:0):
 * every RPC round trip; a cross-tenant attempt through every RPC (another tenant's service sees
 * only its own secrets); a bad-input sweep; policy on secret names (an identity denied a name
 * glob is refused, its other names still work); audit coverage (a record per call naming the
 * secret and version) with no value in the audit file or the daemon's logs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
let other: KeybrokerClient;
let limited: KeybrokerClient;
let admin: KeybrokerClient;
/** Values no record or log line may contain. */
const VALUE = 'postgres://app:S3cr3t-canary-71c9@db/prod';
const VALUE2 = 'second-canary-value-88ad';
const te = (s: string) => Buffer.from(s);

before(async () => {
  d = await startDaemon({
    init: { org: 'acme', tenant: 'alpha' },
    // The test replaces the daemon-wide policy: acme is the operator org.
    env: { KB_POLICY_OPERATOR_ORG: 'acme' },
  });
  admin = d.client('admin');
  svc = d.client('service');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
  other = d.client(await d.issueClient('spiffe://acme/beta/app'));
  limited = d.client(await d.issueClient('spiffe://acme/alpha/limited'));
  const base = JSON.parse(DEFAULT_POLICY_TEXT) as { version: 1; rules: object[] };
  const policy = {
    ...base,
    rules: [
      {
        id: 'limited/no-prod-secrets',
        effect: 'deny',
        identities: ['spiffe://acme/alpha/limited'],
        rpcs: ['keybroker.v1.Secrets/*'],
        keys: ['prod/**'],
      },
      ...base.rules,
    ],
  };
  await admin.policy.unary('SetPolicy', { policyJson: JSON.stringify(policy) });
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

describe('round trip', () => {
  test('put (check-and-set), get latest and by version, list, delete, undelete, destroy', async () => {
    const p1 = await svc.secrets.unary<R>('PutSecret', { name: 'prod/db-url', value: te(VALUE), cas: 0 });
    assert.equal(p1.version, 1);
    const p2 = await svc.secrets.unary<R>('PutSecret', { name: 'prod/db-url', value: te(VALUE2), cas: 1 });
    assert.equal(p2.version, 2);
    await expectCode(
      svc.secrets.unary('PutSecret', { name: 'prod/db-url', value: te('x'), cas: 1 }),
      GrpcCode.FAILED_PRECONDITION,
      'stale check-and-set',
    );
    const got = await svc.secrets.unary<R>('GetSecret', { name: 'prod/db-url' });
    assert.equal((got.value as Buffer).toString(), VALUE2);
    assert.equal(got.version, 2);
    const v1 = await svc.secrets.unary<R>('GetSecret', { name: 'prod/db-url', version: 1 });
    assert.equal((v1.value as Buffer).toString(), VALUE);
    const list = await svc.secrets.unary<{ secrets: R[] }>('ListSecrets', {});
    assert.deepEqual(
      list.secrets.map((s) => [s.name, s.currentVersion]),
      [['prod/db-url', 2]],
    );
    assert.ok(!JSON.stringify(list).includes('canary'), 'ListSecrets carries a value');
    const del = await svc.secrets.unary<{ secret: { versions: R[] } }>('DeleteSecret', {
      name: 'prod/db-url',
    });
    assert.deepEqual(
      del.secret.versions.map((v) => v.state),
      ['SECRET_VERSION_STATE_ACTIVE', 'SECRET_VERSION_STATE_DELETED'],
    );
    await expectCode(svc.secrets.unary('GetSecret', { name: 'prod/db-url' }), GrpcCode.NOT_FOUND, 'deleted');
    await svc.secrets.unary('UndeleteSecret', { name: 'prod/db-url', versions: [2] });
    assert.equal(
      ((await svc.secrets.unary<R>('GetSecret', { name: 'prod/db-url' })).value as Buffer).toString(),
      VALUE2,
    );
    const des = await svc.secrets.unary<{ secret: { versions: R[] } }>('DestroySecretVersions', {
      name: 'prod/db-url',
      versions: [1],
    });
    assert.equal(des.secret.versions[0]?.state, 'SECRET_VERSION_STATE_DESTROYED');
    await expectCode(
      svc.secrets.unary('GetSecret', { name: 'prod/db-url', version: 1 }),
      GrpcCode.NOT_FOUND,
      'destroyed version',
    );
  });
});

describe('cross-tenant', () => {
  const calls: [string, (c: KeybrokerClient) => Promise<unknown>, number][] = [
    ['GetSecret', (c) => c.secrets.unary('GetSecret', { name: 'prod/db-url' }), GrpcCode.NOT_FOUND],
    [
      'GetSecret v1',
      (c) => c.secrets.unary('GetSecret', { name: 'prod/db-url', version: 2 }),
      GrpcCode.NOT_FOUND,
    ],
    ['DeleteSecret', (c) => c.secrets.unary('DeleteSecret', { name: 'prod/db-url' }), GrpcCode.NOT_FOUND],
    ['UndeleteSecret', (c) => c.secrets.unary('UndeleteSecret', { name: 'prod/db-url' }), GrpcCode.NOT_FOUND],
    [
      'DestroySecretVersions',
      (c) => c.secrets.unary('DestroySecretVersions', { name: 'prod/db-url', versions: [2] }),
      GrpcCode.NOT_FOUND,
    ],
    [
      "PutSecret with check-and-set on the other tenant's version",
      (c) => c.secrets.unary('PutSecret', { name: 'prod/db-url', value: te('x'), cas: 2 }),
      GrpcCode.FAILED_PRECONDITION,
    ],
  ];
  for (const [name, call, code] of calls)
    test(`tenant beta cannot reach alpha's secret: ${name}`, async () => {
      await expectCode(call(other), code, name);
    });

  test("beta's ListSecrets and its own secret of the same name are its own", async () => {
    const list = await other.secrets.unary<{ secrets: R[] }>('ListSecrets', {});
    assert.deepEqual(list.secrets, []);
    await other.secrets.unary('PutSecret', { name: 'prod/db-url', value: te('beta value') });
    assert.equal(
      ((await other.secrets.unary<R>('GetSecret', { name: 'prod/db-url' })).value as Buffer).toString(),
      'beta value',
    );
    assert.equal(
      ((await svc.secrets.unary<R>('GetSecret', { name: 'prod/db-url' })).value as Buffer).toString(),
      VALUE2,
      "alpha's secret is untouched",
    );
  });

  test('an admin identity cannot use the data plane', async () => {
    await expectCode(
      admin.secrets.unary('GetSecret', { name: 'prod/db-url' }),
      GrpcCode.PERMISSION_DENIED,
      'admin',
    );
  });
});

describe('bad input', () => {
  const cases: [string, string, R, number][] = [
    ['empty name', 'PutSecret', { name: '', value: te('x') }, GrpcCode.INVALID_ARGUMENT],
    ['name with a space', 'PutSecret', { name: 'a b', value: te('x') }, GrpcCode.INVALID_ARGUMENT],
    ['name over 255', 'GetSecret', { name: 'n'.repeat(256) }, GrpcCode.INVALID_ARGUMENT],
    ['name starting with /', 'GetSecret', { name: '/etc' }, GrpcCode.INVALID_ARGUMENT],
    ['empty value', 'PutSecret', { name: 'x', value: Buffer.alloc(0) }, GrpcCode.INVALID_ARGUMENT],
    ['value over 64 KiB', 'PutSecret', { name: 'x', value: Buffer.alloc(65537) }, GrpcCode.INVALID_ARGUMENT],
    [
      'max_versions 101',
      'PutSecret',
      { name: 'x', value: te('x'), maxVersions: 101 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    ['bad customer', 'PutSecret', { name: 'x', value: te('x'), customer: 'No!' }, GrpcCode.INVALID_ARGUMENT],
    ['unknown customer', 'PutSecret', { name: 'x', value: te('x'), customer: 'ghost' }, GrpcCode.NOT_FOUND],
    ['unknown secret', 'GetSecret', { name: 'nope' }, GrpcCode.NOT_FOUND],
    ['unknown version', 'GetSecret', { name: 'prod/db-url', version: 99 }, GrpcCode.NOT_FOUND],
    ['destroy without versions', 'DestroySecretVersions', { name: 'prod/db-url' }, GrpcCode.INVALID_ARGUMENT],
    [
      'destroy version 0',
      'DestroySecretVersions',
      { name: 'prod/db-url', versions: [0] },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'delete 101 versions',
      'DeleteSecret',
      { name: 'prod/db-url', versions: Array.from({ length: 101 }, (_, i) => i + 1) },
      GrpcCode.INVALID_ARGUMENT,
    ],
    ['delete unknown version', 'DeleteSecret', { name: 'prod/db-url', versions: [42] }, GrpcCode.NOT_FOUND],
  ];
  for (const [name, rpc, req, code] of cases)
    test(`${rpc}: ${name}`, async () => {
      const e = await expectCode(svc.secrets.unary(rpc, req), code, name);
      assert.ok(!String(e.details).includes('canary'), 'an error echoes a value');
    });

  test('a malformed message is INVALID_ARGUMENT', async () => {
    const raw = svc.secrets.raw as unknown as { makeUnaryRequest: (...a: unknown[]) => unknown };
    const e = await new Promise<{ code: number }>((resolve) =>
      raw.makeUnaryRequest(
        '/keybroker.v1.Secrets/GetSecret',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff]),
        (err: { code: number }) => resolve(err),
      ),
    );
    assert.equal(e.code, GrpcCode.INVALID_ARGUMENT);
  });
});

describe('policy on secret names', () => {
  test('an identity denied "prod/**" is refused those names, through every RPC', async () => {
    const calls: [string, R][] = [
      ['GetSecret', { name: 'prod/db-url' }],
      ['PutSecret', { name: 'prod/new', value: te('x') }],
      ['DeleteSecret', { name: 'prod/db-url' }],
      ['UndeleteSecret', { name: 'prod/db-url' }],
      ['DestroySecretVersions', { name: 'prod/db-url', versions: [2] }],
    ];
    for (const [rpc, req] of calls)
      await expectCode(limited.secrets.unary(rpc, req), GrpcCode.PERMISSION_DENIED, `limited ${rpc}`);
    // Its other names work.
    await limited.secrets.unary('PutSecret', { name: 'dev/db-url', value: te('dev value') });
    assert.equal(
      ((await limited.secrets.unary<R>('GetSecret', { name: 'dev/db-url' })).value as Buffer).toString(),
      'dev value',
    );
    // The secret is untouched by the refused calls.
    assert.equal(
      ((await svc.secrets.unary<R>('GetSecret', { name: 'prod/db-url' })).value as Buffer).toString(),
      VALUE2,
    );
  });
});

describe('audit', () => {
  test('every Secrets call has a record naming the secret and version; no value anywhere', async () => {
    const file = join(d.dataDir, 'audit/audit.log');
    const recs = (await queryAudit(file, {})).filter((r) => r.rpc.startsWith('keybroker.v1.Secrets/'));
    const rpcs = new Set(recs.map((r) => r.rpc.slice('keybroker.v1.Secrets/'.length)));
    for (const rpc of [
      'PutSecret',
      'GetSecret',
      'ListSecrets',
      'DeleteSecret',
      'UndeleteSecret',
      'DestroySecretVersions',
    ])
      assert.ok(rpcs.has(rpc), `no audit record of ${rpc}`);
    const put = recs.find((r) => r.rpc.endsWith('/PutSecret') && r.result === 'ok' && r.tenant === 'alpha');
    assert.equal(put?.keyName, 'prod/db-url');
    assert.equal(put?.keyVersion, 1);
    const denied = recs.filter((r) => r.identity === 'spiffe://acme/alpha/limited' && r.result === 'denied');
    assert.ok(denied.length >= 5, `denied records of the limited identity: ${denied.length}`);
    assert.ok(
      denied.every((r) => r.reason?.includes('limited/no-prod-secrets')),
      'denied records name the rule',
    );
    const raw = readFileSync(file, 'utf8');
    for (const v of [VALUE, VALUE2, 'beta value', 'dev value', 'canary'])
      assert.ok(!raw.includes(v), `the audit file contains a secret value (${v})`);
    for (const v of [VALUE, VALUE2, 'canary'])
      assert.ok(!d.output.includes(v), `the daemon's log contains a secret value (${v})`);
    const metrics = await d.metrics();
    assert.ok(!metrics.body.includes('canary'), 'metrics contain a value');
  });
});
