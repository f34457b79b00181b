/**
 * Blind indexes against the real daemon (SoftHSM2, SQLite, gRPC + mTLS on 127.0.0.1:0): admins
 * define, rotate, retire and list indexes (Admin); tenant services compute tokens
 * (BlindIndexes), single and batch; the same index name in another tenant gives other tokens and
 * no RPC reaches another tenant's index; a bad-input sweep; roles and policy (an identity denied
 * an index name is refused); audit records of every RPC naming the index, with no value or token.
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
type Tokens = { tokens: { version: number; token: Buffer }[] };
let d: DaemonHandle;
let svc: KeybrokerClient;
let other: KeybrokerClient;
let limited: KeybrokerClient;
let admin: KeybrokerClient;
let viewer: KeybrokerClient;
let otherOrgAdmin: KeybrokerClient;
const EMAIL = 'Canary.Person-5e1f@Example.com';
const te = (s: string) => Buffer.from(s);
const hex = (b: Buffer | undefined) => (b ? b.toString('hex') : 'none');
const NORM = [
  'BLIND_INDEX_NORMALIZATION_NFKC',
  'BLIND_INDEX_NORMALIZATION_LOWERCASE',
  'BLIND_INDEX_NORMALIZATION_TRIM',
];
const tokensSeen: string[] = [];

const compute = async (c: KeybrokerClient, req: R) => {
  const r = await c.blindIndexes.unary<Tokens>('ComputeBlindIndex', req);
  for (const t of r.tokens) tokensSeen.push(hex(t.token));
  return r.tokens;
};

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
  viewer = d.client(await d.issueClient('spiffe://acme/admin/vic'));
  otherOrgAdmin = d.client(await d.issueClient('spiffe://zeta/admin/root'));
  const base = JSON.parse(DEFAULT_POLICY_TEXT) as { version: 1; rules: object[] };
  const policy = {
    ...base,
    roleBindings: [{ identity: 'spiffe://acme/admin/vic', role: 'viewer' }],
    rules: [
      {
        id: 'limited/no-email-index',
        effect: 'deny',
        identities: ['spiffe://acme/alpha/limited'],
        rpcs: ['keybroker.v1.BlindIndexes/*'],
        keys: ['email'],
      },
      ...base.rules,
    ],
  };
  await admin.policy.unary('SetPolicy', { policyJson: JSON.stringify(policy) });
  for (const tenant of ['alpha', 'beta'])
    await admin.admin.unary('CreateBlindIndex', {
      org: 'acme',
      tenant,
      index: 'email',
      normalization: NORM,
      outputBytes: 16,
    });
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

describe('define, compute, rotate', () => {
  test('normalized values give one token; rotation keeps old tokens searchable until retired', async () => {
    const a = await compute(svc, { index: 'email', value: te(EMAIL) });
    const b = await compute(svc, { index: 'email', value: te(`  ${EMAIL.toLowerCase()} `) });
    assert.equal(a.length, 1);
    assert.equal(a[0]?.token.length, 16);
    assert.equal(hex(a[0]?.token), hex(b[0]?.token));
    const rotated = await admin.admin.unary<{ index: R }>('RotateBlindIndex', {
      org: 'acme',
      tenant: 'alpha',
      index: 'email',
      outputBytes: 32,
    });
    assert.equal(rotated.index.primaryVersion, 2);
    const q = await compute(svc, { index: 'email', value: te(EMAIL), allSearchableVersions: true });
    assert.deepEqual(
      q.map((t) => [t.version, t.token.length]),
      [
        [2, 32],
        [1, 16],
      ],
    );
    assert.equal(hex(q[1]?.token), hex(a[0]?.token), 'version 1 token unchanged');
    await admin.admin.unary('SetBlindIndexMinVersion', {
      org: 'acme',
      tenant: 'alpha',
      index: 'email',
      minVersion: 2,
    });
    const after = await compute(svc, { index: 'email', value: te(EMAIL), allSearchableVersions: true });
    assert.deepEqual(
      after.map((t) => t.version),
      [2],
    );
    const list = await viewer.admin.unary<{ indexes: R[] }>('ListBlindIndexes', {
      org: 'acme',
      tenant: 'alpha',
    });
    assert.deepEqual(
      list.indexes.map((i) => [i.name, i.primaryVersion, i.minVersion]),
      [['email', 2, 2]],
    );
  });

  test('batch: one token per value, per-item errors, same tokens as single calls', async () => {
    const r = await svc.blindIndexes.unary<{ results: R[] }>('ComputeBlindIndexBatch', {
      index: 'email',
      values: [te(EMAIL), Buffer.from([0xff, 0xfe]), te('other@example.com')],
    });
    assert.equal(r.results.length, 3);
    const single = await compute(svc, { index: 'email', value: te(EMAIL) });
    const first = r.results[0]?.result as Tokens;
    assert.equal(hex(first.tokens[0]?.token), hex(single[0]?.token));
    assert.equal((r.results[1]?.error as R).reason, 'INVALID_ARGUMENT', 'not UTF-8 for a normalizing index');
    assert.ok(r.results[2]?.result, 'the item after an error still has its result');
  });
});

describe('cross-tenant and cross-org', () => {
  test("another tenant's index of the same name gives other tokens", async () => {
    const mine = await compute(svc, { index: 'email', value: te(EMAIL), allSearchableVersions: true });
    const theirs = await compute(other, { index: 'email', value: te(EMAIL), allSearchableVersions: true });
    assert.deepEqual(
      theirs.map((t) => t.version),
      [1],
      "beta's index has its own versions",
    );
    for (const t of mine) assert.notEqual(hex(t.token), hex(theirs[0]?.token));
  });

  test("beta cannot reach alpha's indexes; another org's admin cannot manage them", async () => {
    await admin.admin.unary('CreateBlindIndex', {
      org: 'acme',
      tenant: 'alpha',
      index: 'phone',
      outputBytes: 32,
    });
    await expectCode(
      compute(other, { index: 'phone', value: te('1') }),
      GrpcCode.NOT_FOUND,
      'beta ComputeBlindIndex',
    );
    const batch = await other.blindIndexes.unary<{ results: R[] }>('ComputeBlindIndexBatch', {
      index: 'phone',
      values: [te('1')],
    });
    assert.equal(
      (batch.results[0]?.error as R | undefined)?.reason,
      'NOT_FOUND',
      'beta ComputeBlindIndexBatch',
    );
    const calls: [string, R][] = [
      ['CreateBlindIndex', { org: 'acme', tenant: 'alpha', index: 'x', outputBytes: 16 }],
      ['RotateBlindIndex', { org: 'acme', tenant: 'alpha', index: 'phone' }],
      ['SetBlindIndexMinVersion', { org: 'acme', tenant: 'alpha', index: 'phone', minVersion: 1 }],
      ['ListBlindIndexes', { org: 'acme', tenant: 'alpha' }],
    ];
    for (const [rpc, req] of calls) {
      await expectCode(otherOrgAdmin.admin.unary(rpc, req), GrpcCode.PERMISSION_DENIED, `zeta admin ${rpc}`);
      await expectCode(svc.admin.unary(rpc, req), GrpcCode.PERMISSION_DENIED, `service identity ${rpc}`);
    }
    await expectCode(
      admin.blindIndexes.unary('ComputeBlindIndex', { index: 'phone', value: te('1') }),
      GrpcCode.PERMISSION_DENIED,
      'admin on the data plane',
    );
  });
});

describe('bad input', () => {
  const data: [string, string, R, number][] = [
    ['empty index', 'ComputeBlindIndex', { index: '', value: te('x') }, GrpcCode.INVALID_ARGUMENT],
    [
      'index with capitals',
      'ComputeBlindIndex',
      { index: 'Email', value: te('x') },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'index of 64 chars',
      'ComputeBlindIndex',
      { index: 'a'.repeat(64), value: te('x') },
      GrpcCode.INVALID_ARGUMENT,
    ],
    ['unknown index', 'ComputeBlindIndex', { index: 'nope', value: te('x') }, GrpcCode.NOT_FOUND],
    [
      'empty value',
      'ComputeBlindIndex',
      { index: 'email', value: Buffer.alloc(0) },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'value over 4 KiB',
      'ComputeBlindIndex',
      { index: 'email', value: Buffer.alloc(4097, 0x61) },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'value not UTF-8',
      'ComputeBlindIndex',
      { index: 'email', value: Buffer.from([0xc3]) },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'bad customer',
      'ComputeBlindIndex',
      { index: 'email', value: te('x'), customer: 'X Y' },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'unknown customer',
      'ComputeBlindIndex',
      { index: 'email', value: te('x'), customer: 'ghost' },
      GrpcCode.NOT_FOUND,
    ],
    [
      'batch without values',
      'ComputeBlindIndexBatch',
      { index: 'email', values: [] },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'batch with an empty value',
      'ComputeBlindIndexBatch',
      { index: 'email', values: [te('a'), Buffer.alloc(0)] },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'batch over the item limit',
      'ComputeBlindIndexBatch',
      { index: 'email', values: Array.from({ length: 1001 }, () => te('a')) },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'batch of an unknown index',
      'ComputeBlindIndexBatch',
      { index: 'nope', values: [te('a')] },
      GrpcCode.OK,
    ],
  ];
  for (const [name, rpc, req, code] of data)
    test(`${rpc}: ${name}`, async () => {
      if (code === GrpcCode.OK) {
        // An unknown index is a per-item NOT_FOUND in a batch (a user error of each item).
        const r = await svc.blindIndexes.unary<{ results: R[] }>(rpc, req);
        assert.equal((r.results[0]?.error as R | undefined)?.reason, 'NOT_FOUND');
        return;
      }
      await expectCode(svc.blindIndexes.unary(rpc, req), code, name);
    });
  const adm: [string, string, R, number][] = [
    [
      'create without output_bytes',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'x' },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'create with output_bytes 20',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'x', outputBytes: 20 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'create with UNSPECIFIED step',
      'CreateBlindIndex',
      {
        org: 'acme',
        tenant: 'alpha',
        index: 'x',
        outputBytes: 16,
        normalization: ['BLIND_INDEX_NORMALIZATION_UNSPECIFIED'],
      },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'create with a step twice',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'x', outputBytes: 16, normalization: [NORM[0], NORM[0]] },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'create existing',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'email', outputBytes: 16 },
      GrpcCode.ALREADY_EXISTS,
    ],
    [
      'create in unknown tenant',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'ghost', index: 'x', outputBytes: 16 },
      GrpcCode.NOT_FOUND,
    ],
    [
      'create with bad name',
      'CreateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: '-x', outputBytes: 16 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'rotate unknown',
      'RotateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'nope' },
      GrpcCode.NOT_FOUND,
    ],
    [
      'rotate to length 8',
      'RotateBlindIndex',
      { org: 'acme', tenant: 'alpha', index: 'email', outputBytes: 8 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'min version 0',
      'SetBlindIndexMinVersion',
      { org: 'acme', tenant: 'alpha', index: 'email', minVersion: 0 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    [
      'min version above primary',
      'SetBlindIndexMinVersion',
      { org: 'acme', tenant: 'alpha', index: 'email', minVersion: 9 },
      GrpcCode.INVALID_ARGUMENT,
    ],
    ['list without tenant', 'ListBlindIndexes', { org: 'acme' }, GrpcCode.INVALID_ARGUMENT],
  ];
  for (const [name, rpc, req, code] of adm)
    test(`Admin.${rpc}: ${name}`, async () => {
      await expectCode(admin.admin.unary(rpc, req), code, name);
    });
});

describe('roles and policy', () => {
  test('a viewer lists but cannot define, rotate or retire', async () => {
    const calls: [string, R][] = [
      ['CreateBlindIndex', { org: 'acme', tenant: 'alpha', index: 'y', outputBytes: 16 }],
      ['RotateBlindIndex', { org: 'acme', tenant: 'alpha', index: 'email' }],
      ['SetBlindIndexMinVersion', { org: 'acme', tenant: 'alpha', index: 'email', minVersion: 1 }],
    ];
    for (const [rpc, req] of calls)
      await expectCode(viewer.admin.unary(rpc, req), GrpcCode.PERMISSION_DENIED, `viewer ${rpc}`);
  });

  test('an identity denied the "email" index is refused it (single and batch), other indexes work', async () => {
    await expectCode(
      compute(limited, { index: 'email', value: te('a') }),
      GrpcCode.PERMISSION_DENIED,
      'limited',
    );
    await expectCode(
      limited.blindIndexes.unary('ComputeBlindIndexBatch', { index: 'email', values: [te('a')] }),
      GrpcCode.PERMISSION_DENIED,
      'limited batch',
    );
    assert.equal((await compute(limited, { index: 'phone', value: te('1') })).length, 1);
  });
});

describe('audit', () => {
  test('records for every RPC name the index; no value or token in the audit file or logs', async () => {
    const file = join(d.dataDir, 'audit/audit.log');
    const recs = await queryAudit(file, {});
    const rpcs = new Set(recs.map((r) => r.rpc));
    for (const rpc of [
      'keybroker.v1.BlindIndexes/ComputeBlindIndex',
      'keybroker.v1.BlindIndexes/ComputeBlindIndexBatch',
      'keybroker.v1.Admin/CreateBlindIndex',
      'keybroker.v1.Admin/RotateBlindIndex',
      'keybroker.v1.Admin/SetBlindIndexMinVersion',
      'keybroker.v1.Admin/ListBlindIndexes',
    ])
      assert.ok(rpcs.has(rpc), `no audit record of ${rpc}`);
    const ok = recs.find((r) => r.rpc.endsWith('/ComputeBlindIndex') && r.result === 'ok');
    assert.equal(ok?.keyName, 'email');
    assert.ok((ok?.keyVersion ?? 0) >= 1);
    const denied = recs.filter((r) => r.identity === 'spiffe://acme/alpha/limited' && r.result === 'denied');
    assert.equal(denied.length, 2);
    const raw = readFileSync(file, 'utf8');
    assert.ok(
      !raw.includes('Canary') && !raw.toLowerCase().includes('canary.person'),
      'a value in the audit file',
    );
    assert.ok(tokensSeen.length > 5);
    for (const t of tokensSeen) {
      assert.ok(!raw.includes(t), 'a token (hex) in the audit file');
      assert.ok(
        !raw.includes(Buffer.from(t, 'hex').toString('base64')),
        'a token (base64) in the audit file',
      );
    }
    assert.ok(!d.output.toLowerCase().includes('canary.person'), "a value in the daemon's log");
  });
});
