/**
 * keybroker.v1.Keys lifecycle against the real daemon (SoftHSM2, SQLite, gRPC + mTLS on
 * 127.0.0.1:0): rotation as for symmetric keys (usage limit on use, rotation period through
 * Admin.RotateDueKeys, minimum versions, SetAsymmetricKeyPolicy validation), customer-level keys
 * (scoped to the customer named, crypto-shredded by DestroyCustomer while old signatures verify
 * offline), and the audit trail: every Keys record names its key and, when one was used, its version.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import type { RecordEntry } from '../../daemon/src/audit/audit-record.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';
import { offlineVerify } from './keys-offline.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
let admin: KeybrokerClient;
const te = (s: string): Buffer => Buffer.from(s);
/** Request id -> what its audit record must say (checked by the last test). */
const expected = new Map<string, { rpc: string; keyName?: string; keyVersion?: number; customer?: string }>();
let n = 0;
const rid = (rpc: string, keyName?: string, keyVersion?: number, customer?: string) => {
  const id = `keys-life-${++n}`;
  expected.set(id, {
    rpc: `keybroker.v1.Keys/${rpc}`,
    ...(keyName !== undefined ? { keyName } : {}),
    ...(keyVersion !== undefined ? { keyVersion } : {}),
    ...(customer !== undefined ? { customer } : {}),
  });
  return { requestId: id };
};

before(async () => {
  d = await startDaemon({ init: { org: 'acme', tenant: 'alpha' } });
  svc = d.client('service');
  admin = d.client('admin');
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

test('usage limit: Sign rotates on the use after the limit; versions and uses are reported; old signatures verify', async () => {
  const created = await svc.keys.unary<R>(
    'CreateKey',
    { keyId: 'lim', algorithm: 'KEY_ALGORITHM_ML_DSA_44', policy: { usageLimit: 2 } },
    rid('CreateKey', 'lim', 1),
  );
  assert.deepEqual(
    (created.key as R).policy,
    { rotationPeriodSeconds: 0, usageLimit: 2, minEncryptVersion: 1, minDecryptVersion: 1 },
    'CreateKey policy',
  );
  const sigs: { v: number; sig: Buffer; msg: Buffer }[] = [];
  for (const [i, want] of [1, 1, 2].entries()) {
    const msg = te(`m${i}`);
    const s = await svc.keys.unary<R>('Sign', { keyId: 'lim', message: msg }, rid('Sign', 'lim', want));
    assert.equal(s.keyVersion, want, `Sign #${i + 1} with usageLimit 2: keyVersion ${String(s.keyVersion)}`);
    sigs.push({ v: want, sig: s.signature as Buffer, msg });
  }
  const k = (await svc.keys.unary<R>('DescribeKey', { keyId: 'lim' }, rid('DescribeKey', 'lim', 2))).key as R;
  assert.equal(k.primaryVersion, 2);
  assert.deepEqual(
    (k.versions as R[]).map((v) => v.uses),
    [2, 1],
    'uses per version',
  );
  for (const s of sigs) {
    const r = await svc.keys.unary<R>(
      'Verify',
      { keyId: 'lim', message: s.msg, signature: s.sig },
      rid('Verify', 'lim', s.v),
    );
    assert.deepEqual([r.valid, r.keyVersion], [true, s.v], 'Verify with any version');
  }
});

test('rotation period: Admin.RotateDueKeys rotates a due key; min versions and policy validation over gRPC', async () => {
  await svc.keys.unary(
    'CreateKey',
    { keyId: 'per', algorithm: 'KEY_ALGORITHM_ML_KEM_768' },
    rid('CreateKey', 'per', 1),
  );
  const box1 = await svc.keys.unary<R>(
    'SealBox',
    { keyId: 'per', plaintext: te('v1') },
    rid('SealBox', 'per', 1),
  );
  const set = await svc.keys.unary<R>(
    'SetAsymmetricKeyPolicy',
    { keyId: 'per', policy: { rotationPeriodSeconds: 1 } },
    rid('SetAsymmetricKeyPolicy', 'per', 1),
  );
  assert.equal(((set.key as R).policy as R).rotationPeriodSeconds, 1);
  await sleep(1200);
  const due = await admin.admin.unary<R>('RotateDueKeys', {});
  assert.equal(due.failed, 0, `RotateDueKeys: ${JSON.stringify(due)}`);
  const after1 = (await svc.keys.unary<R>('DescribeKey', { keyId: 'per' })).key as R;
  assert.ok(
    (after1.primaryVersion as number) >= 2,
    `primary after the scan: ${String(after1.primaryVersion)}`,
  );
  // Stop scheduled rotation before the version rules (a 1 s period would keep rotating).
  await svc.keys.unary('SetAsymmetricKeyPolicy', { keyId: 'per', policy: { rotationPeriodSeconds: 0 } });
  const primary = ((await svc.keys.unary<R>('DescribeKey', { keyId: 'per' })).key as R)
    .primaryVersion as number;
  const bad: [string, R, number][] = [
    ['min decrypt above primary', { minDecryptVersion: primary + 1 }, GrpcCode.FAILED_PRECONDITION],
    ['min decrypt above min encrypt', { minDecryptVersion: 2 }, GrpcCode.FAILED_PRECONDITION],
    ['period over ten years', { rotationPeriodSeconds: 400_000_000 }, GrpcCode.INVALID_ARGUMENT],
  ];
  for (const [name, policy, code] of bad)
    await expectCode(svc.keys.unary('SetAsymmetricKeyPolicy', { keyId: 'per', policy }), code, name);
  const opened = await svc.keys.unary<R>(
    'OpenBox',
    { keyId: 'per', sealed: box1.sealed },
    rid('OpenBox', 'per', 1),
  );
  assert.equal((opened.plaintext as Buffer).toString(), 'v1', 'v1 box opens after rotation');
  await svc.keys.unary('SetAsymmetricKeyPolicy', {
    keyId: 'per',
    policy: { minEncryptVersion: primary, minDecryptVersion: 2 },
  });
  await expectCode(
    svc.keys.unary('OpenBox', { keyId: 'per', version: 1, sealed: box1.sealed }),
    GrpcCode.FAILED_PRECONDITION,
    'OpenBox with version 1 below min_decrypt_version 2',
  );
  await expectCode(
    svc.keys.unary('OpenBox', { keyId: 'per', sealed: box1.sealed }),
    GrpcCode.INVALID_ARGUMENT,
    'OpenBox with any version skips v1 (decryption failed)',
  );
});

test('customer-level keys: scoped to the customer; DestroyCustomer shreds them; old signatures verify offline', async () => {
  await admin.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'cu1' });
  const c = { customer: 'cu1' };
  const made = await svc.keys.unary<R>(
    'CreateKey',
    { keyId: 'cu-sig', algorithm: 'KEY_ALGORITHM_ML_DSA_65', ...c },
    rid('CreateKey', 'cu-sig', 1, 'cu1'),
  );
  assert.equal((made.key as R).customer, 'cu1', 'CreateKey names the customer');
  await svc.keys.unary('CreateKey', { keyId: 'cu-box', algorithm: 'KEY_ALGORITHM_X_WING', ...c });
  const ec = await svc.keys.unary<R>('CreateKey', {
    keyId: 'cu-ec',
    algorithm: 'KEY_ALGORITHM_ECDSA_P256',
    ...c,
  });
  assert.deepEqual(
    [(ec.key as R).customer, (ec.key as R).inHsm],
    ['cu1', true],
    'an HSM key for the customer',
  );
  const msg = te('customer document');
  const ecSig = await svc.keys.unary<R>('Sign', { keyId: 'cu-ec', message: msg, ...c });
  const ecPub = (format: string) =>
    svc.keys.unary<R>('GetPublicKey', { keyId: 'cu-ec', format, ...c }).then((r) => r.publicKey as Buffer);
  const ecRaw = await ecPub('PUBLIC_KEY_FORMAT_RAW');
  const ecSpki = await ecPub('PUBLIC_KEY_FORMAT_SPKI_DER');
  const sig = await svc.keys.unary<R>(
    'Sign',
    { keyId: 'cu-sig', message: msg, ...c },
    rid('Sign', 'cu-sig', 1, 'cu1'),
  );
  const box = await svc.keys.unary<R>('SealBox', { keyId: 'cu-box', plaintext: te('for cu1'), ...c });
  const get = (format: string) =>
    svc.keys.unary<R>('GetPublicKey', { keyId: 'cu-sig', format, ...c }).then((r) => r.publicKey as Buffer);
  const raw = await get('PUBLIC_KEY_FORMAT_RAW');
  const spki = await get('PUBLIC_KEY_FORMAT_SPKI_DER');
  await expectCode(
    svc.keys.unary('DescribeKey', { keyId: 'cu-sig' }),
    GrpcCode.NOT_FOUND,
    'without the customer',
  );
  await expectCode(
    svc.keys.unary('Sign', { keyId: 'cu-sig', message: msg, customer: 'default' }),
    GrpcCode.NOT_FOUND,
    'with another customer',
  );
  const listed = await svc.keys.unary<R>('ListKeys', c);
  assert.deepEqual(
    (listed.keys as R[]).map((k) => k.keyId).sort(),
    ['cu-box', 'cu-ec', 'cu-sig'],
    'ListKeys with the customer',
  );
  const tenantList = await svc.keys.unary<R>('ListKeys', {});
  assert.ok(
    !(tenantList.keys as R[]).some((k) => k.customer === 'cu1'),
    'tenant-level list: no customer keys',
  );
  const opened = await svc.keys.unary<R>('OpenBox', { keyId: 'cu-box', sealed: box.sealed, ...c });
  assert.equal((opened.plaintext as Buffer).toString(), 'for cu1');

  const shred = await admin.admin.unary<R>('DestroyCustomer', {
    org: 'acme',
    tenant: 'alpha',
    customer: 'cu1',
  });
  const body = JSON.parse((shred.receipt as R).body as string) as {
    destroyed: {
      hsmKeyLabels?: string[];
      keys?: { keyId: string; algorithm: string; hsmLabels?: string[] }[];
    };
  };
  assert.equal(body.destroyed.hsmKeyLabels?.length, 1, 'the receipt names the destroyed token key of cu-ec');
  assert.deepEqual(
    body.destroyed.keys?.map((k) => `${k.keyId}:${k.algorithm}:${k.hsmLabels?.length ?? 0}`),
    ['cu-box:x-wing:0', 'cu-ec:ecdsa-p256:1', 'cu-sig:ml-dsa-65:0'],
    'the receipt names every key of cu1 by id',
  );
  await expectCode(
    svc.keys.unary('Sign', { keyId: 'cu-ec', message: msg, ...c }),
    GrpcCode.NOT_FOUND,
    'Sign with the HSM key after DestroyCustomer',
  );
  await expectCode(
    svc.keys.unary('OpenBox', { keyId: 'cu-box', sealed: box.sealed, ...c }),
    GrpcCode.NOT_FOUND,
    'OpenBox after DestroyCustomer',
  );
  await expectCode(
    svc.keys.unary('Sign', { keyId: 'cu-sig', message: msg, ...c }),
    GrpcCode.NOT_FOUND,
    'Sign after DestroyCustomer',
  );
  const v = offlineVerify(
    'KEY_ALGORITHM_ML_DSA_65',
    raw,
    spki,
    msg,
    sig.signature as Buffer,
    new Uint8Array(0),
  );
  assert.ok(v.node && v.noble !== false, `old signature verifies offline: ${JSON.stringify(v)}`);
  const ve = offlineVerify(
    'KEY_ALGORITHM_ECDSA_P256',
    ecRaw,
    ecSpki,
    msg,
    ecSig.signature as Buffer,
    new Uint8Array(0),
  );
  assert.ok(ve.node && ve.noble !== false, `old HSM signature verifies offline: ${JSON.stringify(ve)}`);
  // The tenant's own keys still work.
  const s = await svc.keys.unary<R>('Sign', { keyId: 'lim', message: te('still') });
  assert.ok((s.signature as Buffer).length > 0);
});

test('DecapsulateBatch: valid items decapsulate, a flip decapsulates to another secret, every wrong length fails alone', async () => {
  await svc.keys.unary('CreateKey', { keyId: 'dbatch', algorithm: 'KEY_ALGORITHM_ML_KEM_768' });
  const e = await svc.keys.unary<R>('Encapsulate', { keyId: 'dbatch' });
  const ct = e.ciphertext as Buffer;
  const flipped = Buffer.from(ct);
  flipped[100] = (flipped[100] ?? 0) ^ 0x01;
  const lengths = Array.from({ length: ct.length + 2 }, (_, i) => i).filter((l) => l !== ct.length);
  for (let off = 0; off < lengths.length; off += 500) {
    const bad = lengths
      .slice(off, off + 500)
      .map((l) => (l <= ct.length ? ct.subarray(0, l) : Buffer.concat([ct, Buffer.alloc(l - ct.length)])));
    const r = await svc.keys.unary<R>(
      'DecapsulateBatch',
      { keyId: 'dbatch', ciphertexts: [ct, flipped, ...bad] },
      rid('DecapsulateBatch', 'dbatch', 1),
    );
    const res = r.results as R[];
    assert.equal(res.length, bad.length + 2, 'one result per ciphertext');
    assert.deepEqual(res[0]?.sharedSecret, e.sharedSecret, 'the valid ciphertext');
    assert.ok(
      Buffer.isBuffer(res[1]?.sharedSecret) &&
        !(res[1]?.sharedSecret as Buffer).equals(e.sharedSecret as Buffer),
      'a flipped ciphertext decapsulates to another secret (implicit rejection)',
    );
    for (const [i, x] of res.slice(2).entries()) {
      const err = x.error as R | undefined;
      assert.equal(err?.reason, 'DECRYPTION_FAILED', `length ${bad[i]?.length}: ${JSON.stringify(err)}`);
    }
  }
  await expectCode(
    svc.keys.unary('DecapsulateBatch', { keyId: 'dbatch', ciphertexts: [Buffer.alloc(4096)] }),
    GrpcCode.INVALID_ARGUMENT,
    'a ciphertext over the 2 KiB bound',
  );
  await expectCode(
    svc.keys.unary('DecapsulateBatch', { keyId: 'lim', ciphertexts: [ct] }),
    GrpcCode.INVALID_ARGUMENT,
    'a signature key',
  );
});

test('EncapsulateBatch: fresh encapsulations to the primary that DecapsulateBatch opens; counted as uses and batch items', async () => {
  const batchItems = async (rpc: string) => {
    const m = new RegExp(
      `^keybroker_batch_items_total\\{[^}]*rpc="${rpc}"[^}]*outcome="ok"[^}]*\\} (\\d+)$`,
      'm',
    );
    return Number(m.exec((await d.metrics()).body)?.[1] ?? 0);
  };
  const itemsBefore = await batchItems('EncapsulateBatch');
  await svc.keys.unary('CreateKey', {
    keyId: 'ebatch',
    algorithm: 'KEY_ALGORITHM_X_WING',
    policy: { usageLimit: 40 },
  });
  const e = await svc.keys.unary<R>(
    'EncapsulateBatch',
    { keyId: 'ebatch', count: 33 },
    rid('EncapsulateBatch', 'ebatch', 1),
  );
  const res = e.results as R[];
  assert.equal(e.keyVersion, 1);
  assert.equal(res.length, 33, 'count encapsulations');
  assert.equal(
    new Set(res.map((x) => (x.ciphertext as Buffer).toString('hex'))).size,
    33,
    'each ciphertext is fresh',
  );
  const d1 = await svc.keys.unary<R>('DecapsulateBatch', {
    keyId: 'ebatch',
    ciphertexts: res.map((x) => x.ciphertext),
  });
  assert.deepEqual(
    (d1.results as R[]).map((x) => x.sharedSecret),
    res.map((x) => x.sharedSecret),
    'DecapsulateBatch gives each encapsulation its secret',
  );
  assert.equal(
    (await batchItems('EncapsulateBatch')) - itemsBefore,
    33,
    'keybroker_batch_items_total counts the items',
  );
  // 33 uses of 40: the next batch of 8 passes the limit, and the one after goes to a new version.
  await svc.keys.unary('EncapsulateBatch', { keyId: 'ebatch', count: 8 });
  const k = (await svc.keys.unary<R>('DescribeKey', { keyId: 'ebatch' })).key as R;
  assert.deepEqual(
    (k.versions as R[]).map((v) => v.uses),
    [41],
    'a batch counts each encapsulation as a use',
  );
  const e2 = await svc.keys.unary<R>(
    'EncapsulateBatch',
    { keyId: 'ebatch', count: 1 },
    rid('EncapsulateBatch', 'ebatch', 2),
  );
  assert.equal(e2.keyVersion, 2, 'past its usage limit the key rotated');
  const old = await svc.keys.unary<R>('Decapsulate', {
    keyId: 'ebatch',
    version: 1,
    ciphertext: res[5]?.ciphertext,
  });
  assert.deepEqual(old.sharedSecret, res[5]?.sharedSecret, 'version 1 still opens its encapsulations');

  for (const [what, req, code] of [
    ['count 0', { keyId: 'ebatch', count: 0 }, GrpcCode.INVALID_ARGUMENT],
    ['count over the batch bound', { keyId: 'ebatch', count: 100_000 }, GrpcCode.INVALID_ARGUMENT],
    ['a signature key', { keyId: 'lim', count: 2 }, GrpcCode.INVALID_ARGUMENT],
    ['an unknown key', { keyId: 'nope', count: 2 }, GrpcCode.NOT_FOUND],
  ] as const)
    await expectCode(svc.keys.unary('EncapsulateBatch', req), code, what);
});

test('VerifyBatch of ML-DSA (on the worker pool from 8 items) agrees with Verify item by item, across versions', async () => {
  await svc.keys.unary('CreateKey', { keyId: 'vb', algorithm: 'KEY_ALGORITHM_ML_DSA_65' });
  const ctx = te('ctx');
  const s1 = await svc.keys.unary<R>('Sign', { keyId: 'vb', message: te('one'), context: ctx });
  await svc.keys.unary('RotateKey', { keyId: 'vb' });
  const s2 = await svc.keys.unary<R>('Sign', { keyId: 'vb', message: te('two'), context: ctx });
  const sig1 = s1.signature as Buffer;
  const sig2 = s2.signature as Buffer;
  const flip = Buffer.from(sig2);
  flip[10] = (flip[10] ?? 0) ^ 1;
  const items: [string, { message: Buffer; signature: Buffer }, boolean, number][] = [
    ['v1 signature', { message: te('one'), signature: sig1 }, true, 1],
    ['v2 signature', { message: te('two'), signature: sig2 }, true, 2],
    ['v1 signature, other message', { message: te('two'), signature: sig1 }, false, 0],
    ['flipped bit', { message: te('two'), signature: flip }, false, 0],
    ['truncated', { message: te('two'), signature: sig2.subarray(0, 100) }, false, 0],
    ['extended', { message: te('two'), signature: Buffer.concat([sig2, Buffer.alloc(1)]) }, false, 0],
    ['empty signature', { message: te('two'), signature: Buffer.alloc(0) }, false, 0],
    ['v2 again', { message: te('two'), signature: sig2 }, true, 2],
    ['v1 again', { message: te('one'), signature: sig1 }, true, 1],
  ];
  for (const version of [0, 1, 2]) {
    const r = await svc.keys.unary<R>('VerifyBatch', {
      keyId: 'vb',
      version,
      context: ctx,
      items: items.map(([, it]) => it),
    });
    const res = r.results as R[];
    for (const [i, [name, it, valid, v]] of items.entries()) {
      const want = version === 0 ? [valid, v] : valid && v === version ? [true, v] : [false, 0];
      assert.deepEqual([res[i]?.valid, res[i]?.keyVersion], want, `VerifyBatch(version ${version}) ${name}`);
      const single = await svc.keys.unary<R>('Verify', { keyId: 'vb', version, context: ctx, ...it });
      assert.deepEqual(
        [single.valid, single.keyVersion],
        want,
        `Verify(version ${version}) ${name} agrees with the batch`,
      );
    }
  }
  const noCtx = await svc.keys.unary<R>('VerifyBatch', {
    keyId: 'vb',
    items: items.map(([, it]) => it),
  });
  assert.ok(
    (noCtx.results as R[]).every((x) => x.valid === false),
    'without the context string nothing verifies',
  );
});

test('audit: every Keys record names its key and the version used (and the customer of a customer key)', async () => {
  await svc.keys.unary(
    'CreateKey',
    { keyId: 'aud', algorithm: 'KEY_ALGORITHM_ED25519' },
    rid('CreateKey', 'aud', 1),
  );
  const calls: [string, R, number | undefined][] = [
    ['RotateKey', { keyId: 'aud' }, 2],
    ['SetAsymmetricKeyVersionEnabled', { keyId: 'aud', version: 1, enabled: true }, 1],
    ['GetPublicKey', { keyId: 'aud', version: 1 }, 1],
    ['DescribeKey', { keyId: 'aud' }, 2],
    ['SetAsymmetricKeyPolicy', { keyId: 'aud', policy: { usageLimit: 1000 } }, 2],
  ];
  for (const [rpc, req, v] of calls) await svc.keys.unary(rpc, req, rid(rpc, 'aud', v));
  const s = await svc.keys.unary<R>('Sign', { keyId: 'aud', message: te('x') }, rid('Sign', 'aud', 2));
  await svc.keys.unary(
    'SignBatch',
    { keyId: 'aud', messages: [te('a'), te('b')] },
    rid('SignBatch', 'aud', 2),
  );
  await svc.keys.unary(
    'VerifyBatch',
    { keyId: 'aud', items: [{ message: te('x'), signature: s.signature }] },
    rid('VerifyBatch', 'aud', 2),
  );
  await svc.keys.unary('CreateKey', { keyId: 'aud-kem', algorithm: 'KEY_ALGORITHM_ML_KEM_768' });
  const e = await svc.keys.unary<R>('Encapsulate', { keyId: 'aud-kem' }, rid('Encapsulate', 'aud-kem', 1));
  await svc.keys.unary(
    'Decapsulate',
    { keyId: 'aud-kem', ciphertext: e.ciphertext },
    rid('Decapsulate', 'aud-kem', 1),
  );
  await expectCode(
    svc.keys.unary('Sign', { keyId: 'no-such-key', message: te('x') }, rid('Sign', 'no-such-key')),
    GrpcCode.NOT_FOUND,
    'Sign with a missing key',
  );
  await svc.keys.unary('ListKeys', {}, rid('ListKeys'));

  const path = join(d.dataDir, 'audit/audit.log');
  let got: RecordEntry[] = [];
  let all: RecordEntry[] = [];
  for (let i = 0; i < 50; i++) {
    all = (await queryAudit(path, {})).filter((r) => expected.has(r.requestId));
    // Lifecycle calls also leave an `intent` record before they act; the outcome is checked here.
    got = all.filter((r) => r.result !== 'intent');
    if (got.length >= expected.size) break;
    await sleep(100);
  }
  assert.equal(got.length, expected.size, `audit records for ${expected.size} Keys calls`);
  const lifecycle = new Set([
    'CreateKey',
    'RotateKey',
    'SetAsymmetricKeyPolicy',
    'SetAsymmetricKeyVersionEnabled',
  ]);
  const method = (rpc: string) => rpc.split('/')[1] ?? rpc;
  assert.deepEqual(
    all
      .filter((r) => r.result === 'intent')
      .map((r) => method(r.rpc))
      .sort(),
    [...expected.values()]
      .map((e) => method(e.rpc))
      .filter((m) => lifecycle.has(m))
      .sort(),
    'an intent record before each lifecycle call, none before reads and crypto',
  );
  for (const r of got) {
    const want = expected.get(r.requestId);
    assert.ok(want);
    const what = `${r.requestId} ${want.rpc}`;
    assert.equal(r.rpc, want.rpc, what);
    assert.equal(r.keyName, want.keyName, `${what}: keyName`);
    assert.equal(r.keyVersion, want.keyVersion, `${what}: keyVersion`);
    if (want.customer !== undefined) assert.equal(r.customer, want.customer, `${what}: customer`);
  }
});
