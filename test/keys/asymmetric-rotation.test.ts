// Rotation of tenant asymmetric keys as for symmetric keys, on real SoftHSM2 and real SQLite files:
// a usage limit makes a new primary on the next use (signatures, batch items, encapsulations,
// sealed boxes count), a rotation period makes one in the broker's rotation scan (rotateDueKeys)
// or on the next use, minimum versions are enforced, policies are validated like KeyPolicy, and
// old versions keep verifying / decapsulating / opening. Counts survive a restart.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { verifyWith } from '../../daemon/src/keys/asymmetric-key-ops.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { bytes, codeOf, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
let rt: AsymmetricRuntime;
let now = new Date('2030-01-01T00:00:00Z');
const A = ref('acme', 'tenant-a');
const none = new Uint8Array(0);

const open = (d: string) => openBroker(env.hsm, d, { pqc: { runtime: rt }, clock: () => now });
const asym = (k: KeyBroker = kb) => {
  assert.ok(k.asymmetric, 'KeyBroker.asymmetric is set when options.pqc is given');
  return k.asymmetric;
};
const advance = (s: number) => {
  now = new Date(now.getTime() + s * 1000);
};

before(async () => {
  env = await openSoftHsm('kb-asym-rot');
  dir = env.dataDir();
  rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  kb = await open(dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
});
after(async () => {
  await kb.close();
  await env.close();
});

test('usage limit: signatures (and batch items) count; the next use after the limit signs with a new version; old signatures verify', async () => {
  const created = await asym().createKey(A, 'sig-limit', 'ml-dsa-44', { policy: { usageLimit: 3 } });
  assert.deepEqual(
    created.policy,
    { rotationPeriodSeconds: 0, usageLimit: 3, minEncryptVersion: 1, minDecryptVersion: 1 },
    'createKey(policy {usageLimit: 3}) stores the policy with defaults for the rest',
  );
  const sigs: { v: number; sig: Uint8Array; msg: string }[] = [];
  for (const msg of ['a', 'b']) {
    const s = await asym().sign(A, 'sig-limit', bytes(msg), none);
    sigs.push({ v: s.version, sig: s.signature, msg });
  }
  const batch = await asym().signBatch(A, 'sig-limit', [bytes('c')], none);
  assert.equal(batch.version, 1, 'third operation (a batch of one) still under the limit: version 1');
  assert.equal((await asym().describeKey(A, 'sig-limit')).versions[0]?.uses, 3, 'v1 counted 3 uses');
  const fourth = await asym().sign(A, 'sig-limit', bytes('d'), none);
  assert.equal(
    fourth.version,
    2,
    `sign after 3 uses with usageLimit 3: got version ${fourth.version}, want 2`,
  );
  sigs.push({ v: 2, sig: fourth.signature, msg: 'd' });
  const info = await asym().describeKey(A, 'sig-limit');
  assert.equal(info.primaryVersion, 2, 'primary after the usage-limit rotation');
  assert.deepEqual(
    info.versions.map((v) => v.uses),
    [3, 1],
    'uses per version after the rotation',
  );
  for (const s of sigs) {
    const r = await asym().verify(
      A,
      'sig-limit',
      undefined,
      { message: bytes(s.msg), signature: s.sig },
      none,
    );
    assert.deepEqual(r, { valid: true, version: s.v }, `verify(${s.msg}) with any version`);
  }
  // A batch larger than what is left: the whole batch uses the primary it started with.
  const big = await asym().signBatch(A, 'sig-limit', [bytes('e'), bytes('f'), bytes('g')], none);
  assert.equal(big.version, 2, 'a batch signs with one version');
  const next = await asym().sign(A, 'sig-limit', bytes('h'), none);
  assert.equal(next.version, 3, 'after 4 uses of v2 (limit 3) the next sign rotates to v3');
});

test('usage limit on KEM keys: encapsulations and sealed boxes count; old boxes and ciphertexts still open', async () => {
  await asym().createKey(A, 'box-limit', 'ml-kem-768', { policy: { usageLimit: 2 } });
  const box1 = await asym().sealBox(A, 'box-limit', bytes('first'), none, none);
  const enc1 = await asym().encapsulate(A, 'box-limit');
  assert.deepEqual([box1.version, enc1.version], [1, 1], 'two uses under limit 2');
  const box2 = await asym().sealBox(A, 'box-limit', bytes('second'), none, none);
  assert.equal(box2.version, 2, `third use rotates: sealed to version ${box2.version}, want 2`);
  const o1 = await asym().openBox(A, 'box-limit', undefined, box1.sealed, none, none);
  assert.deepEqual([text(o1.plaintext), o1.version], ['first', 1], 'box sealed to v1 opens with v1');
  const d1 = await asym().decapsulate(A, 'box-limit', 1, enc1.cipherText);
  assert.deepEqual(
    Buffer.from(d1.sharedSecret),
    Buffer.from(enc1.sharedSecret),
    'v1 ciphertext decapsulates',
  );
  const o2 = await asym().openBox(A, 'box-limit', undefined, box2.sealed, none, none);
  assert.equal(text(o2.plaintext), 'second');
});

test('rotation period: the rotation scan rotates due keys only; a due key also rotates on its next use', async () => {
  await asym().createKey(A, 'sched', 'ed25519', { policy: { rotationPeriodSeconds: 3600 } });
  await asym().createKey(A, 'sched-use', 'x-wing', { policy: { rotationPeriodSeconds: 3600 } });
  await asym().createKey(A, 'manual', 'ml-dsa-65');
  const old = await asym().sign(A, 'sched', bytes('before'), none);
  advance(1800);
  await kb.rotateDueKeys();
  assert.equal((await asym().describeKey(A, 'sched')).primaryVersion, 1, 'not due after half a period');
  advance(1801);
  const sealedBefore = await asym().sealBox(A, 'sched-use', bytes('old'), none, none);
  assert.equal(sealedBefore.version, 2, 'a due key rotates on its next use (sealBox)');
  const r = await kb.rotateDueKeys();
  assert.ok(r.rotated >= 1 && r.failed === 0, `rotateDueKeys: ${JSON.stringify(r)}`);
  assert.equal((await asym().describeKey(A, 'sched')).primaryVersion, 2, 'due key rotated by the scan');
  assert.equal((await asym().describeKey(A, 'sched-use')).primaryVersion, 2, 'not rotated twice');
  assert.equal((await asym().describeKey(A, 'manual')).primaryVersion, 1, 'no period: never scheduled');
  const v = await asym().verify(
    A,
    'sched',
    undefined,
    { message: bytes('before'), signature: old.signature },
    none,
  );
  assert.deepEqual(v, { valid: true, version: 1 }, 'signature of v1 verifies after the scheduled rotation');
  const pk1 = await asym().publicKey(A, 'sched', 1);
  assert.ok(verifyWith(rt, 'ed25519', pk1.publicKey, bytes('before'), old.signature, none), 'offline verify');
});

test('minimum versions: verify/decapsulate/open below min_decrypt_version are refused or skipped; policy is validated', async () => {
  await asym().createKey(A, 'minv', 'ml-kem-768');
  const box1 = await asym().sealBox(A, 'minv', bytes('v1 box'), none, none);
  await asym().rotateKey(A, 'minv');
  const box2 = await asym().sealBox(A, 'minv', bytes('v2 box'), none, none);
  const cases: [string, Record<string, number>, string][] = [
    ['min decrypt above primary', { minDecryptVersion: 3 }, 'FAILED_PRECONDITION'],
    ['min encrypt above primary', { minEncryptVersion: 3 }, 'FAILED_PRECONDITION'],
    ['min decrypt above min encrypt', { minDecryptVersion: 2 }, 'FAILED_PRECONDITION'],
    ['negative usage limit', { usageLimit: -1 }, 'INVALID_ARGUMENT'],
    ['fractional period', { rotationPeriodSeconds: 1.5 }, 'INVALID_ARGUMENT'],
    ['min decrypt 0', { minDecryptVersion: 0 }, 'INVALID_ARGUMENT'],
  ];
  for (const [name, p, want] of cases)
    assert.equal(await codeOf(() => asym().setKeyPolicy(A, 'minv', p)), want, `setKeyPolicy ${name}`);
  const info = await asym().setKeyPolicy(A, 'minv', { minEncryptVersion: 2, minDecryptVersion: 2 });
  assert.equal(info.policy.minDecryptVersion, 2);
  assert.equal(
    await codeOf(() => asym().openBox(A, 'minv', 1, box1.sealed, none, none)),
    'VERSION_BELOW_MINIMUM',
    'openBox(version 1) below min_decrypt_version',
  );
  assert.equal(
    await codeOf(() => asym().openBox(A, 'minv', undefined, box1.sealed, none, none)),
    'DECRYPTION_FAILED',
    'openBox(any version) skips v1: the v1 box no longer opens',
  );
  assert.equal(
    await codeOf(() => asym().decapsulate(A, 'minv', 1, new Uint8Array(1088))),
    'VERSION_BELOW_MINIMUM',
    'decapsulate(version 1)',
  );
  assert.equal(
    text((await asym().openBox(A, 'minv', undefined, box2.sealed, none, none)).plaintext),
    'v2 box',
  );
  // Lowering the minimum again re-admits v1 (as for symmetric keys: a rule, not a destruction).
  await asym().setKeyPolicy(A, 'minv', { minDecryptVersion: 1 });
  assert.equal(text((await asym().openBox(A, 'minv', 1, box1.sealed, none, none)).plaintext), 'v1 box');
});

test('use counts and policies survive a restart (flushed at close)', async () => {
  await asym().createKey(A, 'persist', 'ml-dsa-44', { policy: { usageLimit: 5, rotationPeriodSeconds: 99 } });
  for (let i = 0; i < 4; i++) await asym().sign(A, 'persist', bytes(`m${i}`), none);
  await kb.close();
  kb = await open(dir);
  const info = await asym().describeKey(A, 'persist');
  assert.equal(info.versions[0]?.uses, 4, 'uses after restart');
  assert.equal(info.policy.usageLimit, 5);
  assert.equal(info.policy.rotationPeriodSeconds, 99);
  assert.equal((await asym().sign(A, 'persist', bytes('5th'), none)).version, 1, '5th use: still v1');
  assert.equal((await asym().sign(A, 'persist', bytes('6th'), none)).version, 2, '6th use rotates');
});

test('the rotation scan skips a disabled tenant without failing, and rotates its due key once it is enabled again', async () => {
  const B = ref('acme', 'tenant-b');
  await kb.createTenant(B.org, B.tenant);
  await asym().createKey(B, 'b-sched', 'ml-dsa-44', { policy: { rotationPeriodSeconds: 60 } });
  await kb.setTenantEnabled(B, false);
  advance(120);
  const r = await kb.rotateDueKeys();
  assert.equal(r.failed, 0, `rotateDueKeys with a disabled tenant: ${JSON.stringify(r)}`);
  await kb.setTenantEnabled(B, true);
  assert.equal((await asym().describeKey(B, 'b-sched')).primaryVersion, 1, 'not rotated while disabled');
  await kb.rotateDueKeys();
  assert.equal((await asym().describeKey(B, 'b-sched')).primaryVersion, 2, 'rotated after re-enabling');
});
