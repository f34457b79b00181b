// Per-tenant bounds on asymmetric keys, on real SoftHSM2 and real SQLite files (review M4, E10):
// Verify/VerifyBatch/OpenBox without a version try at most the newest keys.maxVerifyVersions
// enabled versions (the cost of a call no longer grows with the number of versions; an older
// version is used when the caller names it), rotation beyond keys.maxVersionsPerKey is refused,
// HSM-resident ECDSA versions and keys per tenant are capped, each with LIMIT_REACHED
// (RESOURCE_EXHAUSTED) naming the config key, and nothing is generated for a refused version.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import type { AsymmetricKeyLimits } from '../../daemon/src/keys/asymmetric-key-limits.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { bytes, codeOf, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

const LIMITS: AsymmetricKeyLimits = {
  maxKeysPerTenant: 5,
  maxVersionsPerKey: 30,
  maxHsmKeysPerTenant: 3,
  maxVerifyVersions: 4,
};
let env: SoftHsmEnv;
let kb: KeyBroker;
let rt: AsymmetricRuntime;
let verifies = 0;
let opens = 0;
const A = ref('acme', 'tenant-a');
const B = ref('acme', 'tenant-b');
const none = new Uint8Array(0);
const asym = () => {
  assert.ok(kb.asymmetric);
  return kb.asymmetric;
};

/** The KbError `fn` rejects with. */
async function refusal(fn: () => Promise<unknown>): Promise<KbError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof KbError, String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

before(async () => {
  env = await openSoftHsm('kb-asym-limits');
  rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  // Count the verifications and box openings actually attempted.
  const router = rt.router as unknown as { verify: (...a: unknown[]) => boolean };
  const verify = router.verify.bind(router);
  router.verify = (...a) => (verifies++, verify(...a));
  const boxes = rt.boxes as unknown as { open: (...a: unknown[]) => Promise<Uint8Array> };
  const open = boxes.open.bind(boxes);
  boxes.open = (...a) => (opens++, open(...a));
  kb = await openBroker(env.hsm, env.dataDir(), { pqc: { runtime: rt, limits: LIMITS } });
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
});
after(async () => {
  await kb.close();
  await env.close();
});

test('E10 with the cap: a Verify without a version costs at most maxVerifyVersions checks, whatever the versions', async () => {
  await asym().createKey(A, 'amp', 'ml-dsa-44');
  const v1 = await asym().sign(A, 'amp', bytes('x'), none);
  const bad = { message: bytes('y'), signature: v1.signature };
  const cost = async (item: { message: Uint8Array; signature: Uint8Array }, version?: number) => {
    verifies = 0;
    const r = await asym().verify(A, 'amp', version, item, none);
    return { ...r, checks: verifies };
  };
  assert.deepEqual(await cost(bad), { valid: false, version: 0, checks: 1 }, '1 version: one check');
  for (let i = 1; i < LIMITS.maxVersionsPerKey; i++) await asym().rotateKey(A, 'amp');
  const many = await cost(bad);
  assert.deepEqual(many, { valid: false, version: 0, checks: 4 }, '30 versions: still at most 4 checks');
  // A batch: items x at most 4.
  verifies = 0;
  const batch = await asym().verifyBatch(
    A,
    'amp',
    undefined,
    Array.from({ length: 10 }, () => bad),
    none,
  );
  assert.equal(batch.length, 10);
  assert.equal(verifies, 40, 'VerifyBatch of 10 bad items: 10 x 4 checks, not 10 x 30');
  // v1's genuine signature: too old to be found by trial, found when the caller names v1.
  const good = { message: bytes('x'), signature: v1.signature };
  assert.deepEqual(await cost(good), { valid: false, version: 0, checks: 4 }, 'v1 is not among the newest 4');
  assert.deepEqual(await cost(good, 1), { valid: true, version: 1, checks: 1 }, 'named v1: one check, valid');
  // A signature of one of the newest 4 still verifies without a version.
  const recent = await asym().sign(A, 'amp', bytes('z'), none);
  assert.equal((await cost({ message: bytes('z'), signature: recent.signature })).valid, true);
});

test('rotation beyond maxVersionsPerKey is refused with LIMIT_REACHED naming the config key', async () => {
  const e = await refusal(() => asym().rotateKey(A, 'amp'));
  assert.equal(e.code, 'LIMIT_REACHED');
  assert.equal(e.status, 8, 'RESOURCE_EXHAUSTED');
  assert.match(e.safeMessage, /30 versions.*keys\.maxVersionsPerKey/);
  const info = await asym().describeKey(A, 'amp');
  assert.equal(info.versions.length, 30, 'no version was added');
  // A usage limit that would rotate past the cap refuses the use rather than growing the key.
  await asym().setKeyPolicy(A, 'amp', { usageLimit: 1 });
  assert.equal(await codeOf(() => asym().sign(A, 'amp', bytes('w'), none)), 'LIMIT_REACHED');
});

test('OpenBox without a version tries at most maxVerifyVersions versions; a named version opens old boxes', async () => {
  await asym().createKey(A, 'box', 'x-wing');
  const sealed = await asym().sealBox(A, 'box', bytes('secret'), none, none);
  for (let i = 0; i < 6; i++) await asym().rotateKey(A, 'box');
  opens = 0;
  assert.equal(
    await codeOf(() => asym().openBox(A, 'box', undefined, sealed.sealed, none, none)),
    'DECRYPTION_FAILED',
  );
  assert.equal(opens, 4, 'tried the newest 4 of 7 versions');
  const r = await asym().openBox(A, 'box', 1, sealed.sealed, none, none);
  assert.equal(new TextDecoder().decode(r.plaintext), 'secret');
  assert.equal(r.version, 1);
});

test('HSM-resident ECDSA versions are capped per tenant; nothing is generated for a refused one', async () => {
  await asym().createKey(A, 'ec', 'ecdsa-p256');
  await asym().rotateKey(A, 'ec');
  await asym().createKey(A, 'ec2', 'ecdsa-p256');
  const cases = [
    { name: 'rotate an ecdsa-p256 key', run: () => asym().rotateKey(A, 'ec') },
    { name: 'create an ecdsa-p256 key', run: () => asym().createKey(A, 'ec3', 'ecdsa-p256') },
    {
      name: 'create a composite with its ECDSA half in the HSM',
      run: () => asym().createKey(A, 'comp', 'composite-mldsa65-ecdsa-p256', { hsmEcdsa: true }),
    },
  ];
  for (const c of cases) {
    const e = await refusal(c.run);
    assert.equal(e.code, 'LIMIT_REACHED', c.name);
    assert.match(e.safeMessage, /3 HSM-resident key versions.*keys\.maxHsmKeysPerTenant/, c.name);
  }
  assert.equal((await asym().describeKey(A, 'ec')).versions.length, 2, 'no version added to ec');
  assert.equal(await codeOf(() => asym().describeKey(A, 'ec3')), 'NOT_FOUND', 'ec3 never made');
  // Another tenant has its own count.
  await asym().createKey(B, 'ec', 'ecdsa-p256');
  // A software-only key of the same tenant is not an HSM object.
  await asym().createKey(A, 'soft', 'ed25519');
});

test('keys per tenant are capped', async () => {
  // amp, box, ec, ec2, soft: 5 of 5.
  const e = await refusal(() => asym().createKey(A, 'one-too-many', 'ml-dsa-44'));
  assert.equal(e.code, 'LIMIT_REACHED');
  assert.match(e.safeMessage, /5 asymmetric keys.*keys\.maxAsymmetricKeysPerTenant/);
  await asym().createKey(B, 'fine', 'ml-dsa-44');
});
