/**
 * The errors test: bad input to every RPC, checking the status code and that no message leaks
 * what was sent (plaintext, ciphertext, AAD, key bytes) or anything but a registered safe
 * message. Also: undecodable protobuf -> INVALID_ARGUMENT, oversized fields -> INVALID_ARGUMENT
 * before any work, messages over the gRPC size limit -> RESOURCE_EXHAUSTED, deadlines honoured.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { ERRORS } from '../../daemon/src/errors.ts';
import { startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, bidi, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
let admin: KeybrokerClient;
let goodCt: Buffer;
const MARK = Buffer.from('SECRET-MARKER-7f3a');
const messages: string[] = [];
const SAFE = Object.values(ERRORS).map((e) => e.message);

before(async () => {
  d = await startDaemon();
  svc = d.client('service');
  admin = d.client('admin');
  goodCt = (await svc.crypto.unary<R>('Encrypt', { plaintext: MARK, aad: MARK })).ciphertext as Buffer;
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const I = GrpcCode.INVALID_ARGUMENT;
const big = (n: number) => Buffer.alloc(n, 0x41);

async function check(name: string, p: Promise<unknown>, code: number): Promise<void> {
  const e = await expectCode(p, code, name);
  messages.push(e.details);
  assert.ok(
    SAFE.some((m) => e.details.startsWith(m)),
    `${name}: message "${e.details}" is not a registered safe message`,
  );
  for (const secret of [
    MARK.toString(),
    goodCt.subarray(0, 12).toString('hex'),
    goodCt.subarray(0, 12).toString('base64'),
  ]) {
    assert.ok(!e.details.includes(secret), `${name}: message leaks input: ${e.details}`);
  }
}

test('Crypto RPCs: bad input gets the right code and a safe message', async () => {
  const truncated = goodCt.subarray(0, goodCt.length - 1);
  const cases: [string, string, object, number][] = [
    ['Encrypt bad customer name', 'Encrypt', { customer: 'Bad Name!', plaintext: MARK }, I],
    ['Encrypt unknown customer', 'Encrypt', { customer: 'nobody', plaintext: MARK }, GrpcCode.NOT_FOUND],
    ['Encrypt plaintext over 1 MiB', 'Encrypt', { plaintext: big(1024 * 1024 + 1) }, I],
    ['Encrypt aad over 16 KiB', 'Encrypt', { plaintext: MARK, aad: big(16 * 1024 + 1) }, I],
    ['Decrypt empty ciphertext', 'Decrypt', { ciphertext: Buffer.alloc(0) }, I],
    ['Decrypt garbage', 'Decrypt', { ciphertext: MARK }, I],
    ['Decrypt truncated', 'Decrypt', { ciphertext: truncated, aad: MARK }, I],
    ['Decrypt oversized ciphertext', 'Decrypt', { ciphertext: big(1024 * 1024 + 1025) }, I],
    ['Decrypt wrong aad', 'Decrypt', { ciphertext: goodCt, aad: Buffer.from('x') }, I],
    ['EncryptBatch no items', 'EncryptBatch', { items: [] }, I],
    [
      'EncryptBatch 1001 items',
      'EncryptBatch',
      { items: Array.from({ length: 1001 }, () => ({ plaintext: MARK })) },
      I,
    ],
    ['EncryptBatch bad customer', 'EncryptBatch', { items: [{ customer: '../x', plaintext: MARK }] }, I],
    [
      'EncryptBatch over 8 MiB',
      'EncryptBatch',
      { items: Array.from({ length: 9 }, () => ({ plaintext: big(1024 * 1024) })) },
      I,
    ],
    ['DecryptBatch no items', 'DecryptBatch', { items: [] }, I],
    ['DecryptBatch empty ciphertext', 'DecryptBatch', { items: [{ ciphertext: Buffer.alloc(0) }] }, I],
    ['GenerateDataKey length 24', 'GenerateDataKey', { length: 24 }, I],
    ['GenerateDataKey bad customer', 'GenerateDataKey', { customer: 'A' }, I],
    ['GenerateDataKey aad too big', 'GenerateDataKey', { aad: big(16 * 1024 + 1) }, I],
    ['DecryptDataKey empty', 'DecryptDataKey', { wrappedKey: Buffer.alloc(0) }, I],
    ['DecryptDataKey garbage', 'DecryptDataKey', { wrappedKey: MARK }, I],
    ['DecryptDataKey over 4 KiB', 'DecryptDataKey', { wrappedKey: big(4097) }, I],
    ['DecryptDataKey given a ciphertext', 'DecryptDataKey', { wrappedKey: goodCt, aad: MARK }, I],
    ['Rewrap empty', 'Rewrap', { ciphertext: Buffer.alloc(0) }, I],
    ['Rewrap garbage', 'Rewrap', { ciphertext: MARK }, I],
    ['Rewrap wrong aad', 'Rewrap', { ciphertext: goodCt, aad: Buffer.from('y') }, I],
  ];
  for (const [name, rpc, req, code] of cases) await check(name, svc.crypto.unary(rpc, req), code);
});

test('streaming RPCs: bad sequences and sizes get INVALID_ARGUMENT', async () => {
  const cases: [string, string, object[]][] = [
    ['EncryptStream without init', 'EncryptStream', [{ plaintext: MARK }]],
    ['EncryptStream empty', 'EncryptStream', []],
    ['EncryptStream init twice', 'EncryptStream', [{ init: {} }, { init: {} }]],
    ['EncryptStream piece over 1 MiB', 'EncryptStream', [{ init: {} }, { plaintext: big(1024 * 1024 + 1) }]],
    ['EncryptStream aad too big', 'EncryptStream', [{ init: { aad: big(16 * 1024 + 1) } }]],
    ['DecryptStream without init', 'DecryptStream', [{ chunk: MARK }]],
    ['DecryptStream empty header', 'DecryptStream', [{ init: { header: Buffer.alloc(0) } }]],
    ['DecryptStream garbage header', 'DecryptStream', [{ init: { header: MARK } }]],
    ['DecryptStream ciphertext as header', 'DecryptStream', [{ init: { header: goodCt, aad: MARK } }]],
  ];
  for (const [name, rpc, msgs] of cases) await check(name, bidi(svc.crypto, rpc, msgs), I);
});

test('Admin RPCs: invalid names, versions and policies get INVALID_ARGUMENT', async () => {
  const methods = [
    'CreateOrg',
    'DescribeOrg',
    'SetOrgEnabled',
    'RotateOrgKey',
    'CreateTenant',
    'ListTenants',
    'DescribeTenant',
    'SetTenantEnabled',
    'RotateTenantKey',
    'DestroyTenant',
    'CreateCustomer',
    'ListCustomers',
    'DescribeCustomer',
    'SetCustomerEnabled',
    'RotateCustomerKey',
    'DestroyCustomer',
    'SetKeyPolicy',
    'SetKeyVersionEnabled',
  ];
  for (const m of methods) {
    await check(
      `${m} org "ACME!"`,
      admin.admin.unary(m, { org: 'ACME!', tenant: 'alpha', customer: 'c', version: 1 }),
      I,
    );
    await check(`${m} empty request`, admin.admin.unary(m, {}), I);
  }
  const more: [string, string, object][] = [
    ['CreateTenant "admin" is reserved', 'CreateTenant', { org: 'acme', tenant: 'admin' }],
    ['CreateTenant name too long', 'CreateTenant', { org: 'acme', tenant: 'a'.repeat(64) }],
    ['CreateCustomer path traversal', 'CreateCustomer', { org: 'acme', tenant: 'alpha', customer: '../etc' }],
    ['SetKeyVersionEnabled version 0', 'SetKeyVersionEnabled', { org: 'acme', tenant: 'alpha', version: 0 }],
    [
      'SetKeyPolicy period over 10 years',
      'SetKeyPolicy',
      { org: 'acme', tenant: 'alpha', policy: { rotationPeriodSeconds: 1e10 } },
    ],
    [
      'SetKeyPolicy min version 0',
      'SetKeyPolicy',
      { org: 'acme', tenant: 'alpha', policy: { minDecryptVersion: 0 } },
    ],
  ];
  for (const [name, rpc, req] of more) await check(name, admin.admin.unary(rpc, req), I);
});

test('undecodable protobuf to every unary RPC is INVALID_ARGUMENT, not INTERNAL', async () => {
  const rpcs = [
    [
      'Crypto',
      ['Encrypt', 'Decrypt', 'EncryptBatch', 'DecryptBatch', 'GenerateDataKey', 'DecryptDataKey', 'Rewrap'],
    ],
    ['Admin', ['CreateOrg', 'ListOrgs', 'DescribeTenant', 'SetKeyPolicy', 'DestroyTenant', 'RotateDueKeys']],
  ] as const;
  for (const [svcName, methods] of rpcs) {
    const c = svcName === 'Crypto' ? svc.crypto : admin.admin;
    for (const m of methods) {
      const p = new Promise((resolve, reject) =>
        c.raw.makeUnaryRequest(
          `/keybroker.v1.${svcName}/${m}`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0xff, 0xff, 0xff]),
          (err: ServiceError | null, v?: Buffer) => (err ? reject(err) : resolve(v)),
        ),
      );
      const e = await expectCode(p, I, `${svcName}/${m} with undecodable bytes`);
      assert.equal(e.details, 'invalid argument: malformed request');
    }
  }
});

test('a message over the size limit is INVALID_ARGUMENT before decoding, and the daemon keeps serving', async () => {
  const e = await expectCode(
    svc.crypto.unary('Encrypt', { plaintext: big(17 * 1024 * 1024) }),
    I,
    'Encrypt with a 17 MiB message (limit 16 MiB)',
  );
  assert.equal(e.details, 'request field too large: request message over the size limit');
  await expectCode(
    bidi(svc.crypto, 'EncryptStream', [{ init: {} }, { plaintext: big(17 * 1024 * 1024) }]),
    I,
    'EncryptStream with a 17 MiB message',
  );
  const ok = await svc.crypto.unary<R>('Encrypt', { plaintext: MARK });
  assert.ok((ok.ciphertext as Buffer).length > MARK.length, 'Encrypt after the refused message');
});

test('deadlines are honoured', async () => {
  await expectCode(
    svc.crypto.unary(
      'EncryptBatch',
      { items: Array.from({ length: 1000 }, () => ({ plaintext: big(1024) })) },
      { deadlineMs: 1 },
    ),
    GrpcCode.DEADLINE_EXCEEDED,
    'EncryptBatch with a 1 ms deadline',
  );
});

test('no error message contains submitted bytes (review list)', () => {
  assert.ok(messages.length > 60, `collected ${messages.length} messages`);
  const distinct = [...new Set(messages)].sort();
  for (const m of distinct) assert.ok(m.length < 120, `message too long to be safe: ${m}`);
});

test('rate limits and quotas: RESOURCE_EXHAUSTED with a retry hint, per tenant', async () => {
  const q = await startDaemon({
    env: {
      KB_RATE_LIMIT_TENANT_OPS_PER_DAY: '5',
      KB_RATE_LIMIT_PER_IDENTITY_BURST: '3',
      KB_RATE_LIMIT_PER_IDENTITY_PER_SEC: '1',
    },
  });
  try {
    const c = q.client('service');
    const enc = () => c.crypto.unary('Encrypt', { plaintext: MARK });
    for (let i = 0; i < 3; i++) await enc();
    const e = await expectCode(enc(), GrpcCode.RESOURCE_EXHAUSTED, 'Encrypt past the identity burst');
    assert.match(e.details, /^rate limit exceeded/);
    assert.ok(Number(e.metadata.get('retry-after-ms')[0]) > 0, 'retry-after-ms trailer');
    // Another identity of the same tenant has its own bucket but shares the tenant's daily quota.
    const other = q.client(await q.issueClient('spiffe://acme/alpha/other'));
    await other.crypto.unary('Encrypt', { plaintext: MARK });
    await other.crypto.unary('Encrypt', { plaintext: MARK });
    await expectCode(
      other.crypto.unary('Encrypt', { plaintext: MARK }),
      GrpcCode.RESOURCE_EXHAUSTED,
      'past the daily quota',
    );
  } finally {
    assert.equal(await q.stop(), 0);
    removeDataDir(q.dataDir);
  }
});
