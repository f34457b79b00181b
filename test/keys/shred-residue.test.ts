// Review M1 (E7): no copy of a shredded tenant's or customer's keys may outlive its receipt, on
// real SoftHSM2 and SQLite. (A) a stream opened before the shred fails at its next chunk; (B) a
// cold Decrypt racing DestroyTenant leaves no cache entry behind; PQC workers drop their copies;
// sealed-box seed copies are zeroed when a loaded key is freed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Hsm } from '../../daemon/src/hsm/hsm.ts';
import { AsymmetricRuntime, loadKey } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { PqcWorkerPool } from '../../daemon/src/pqc/pqc-worker-pool.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
const none = new Uint8Array(0);

before(async () => {
  env = await openSoftHsm('kb-residue');
});
after(async () => {
  await env.close();
});

/** The token, with every unwrap delayed: a cold load is still in the HSM when the shred runs. */
function slowUnwraps(hsm: Hsm, ms: number): Hsm {
  return new Proxy(hsm, {
    get(target, p) {
      const v = Reflect.get(target, p, target) as unknown;
      if (p === 'unwrapKey')
        return async (...args: Parameters<Hsm['unwrapKey']>) => {
          await new Promise((r) => setTimeout(r, ms));
          return target.unwrapKey(...args);
        };
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test('(A) streams opened before DestroyTenant fail at the first chunk after the receipt', async () => {
  const kb = await openBroker(env.hsm, env.dataDir());
  try {
    const t1 = ref('acme', 't1');
    await kb.createOrg(org('acme'));
    await kb.createTenant(t1.org, t1.tenant);
    const src = await kb.encryptStream(t1, { aad: none });
    const chunk = src.seal(bytes('first chunk'), true);
    const enc = await kb.encryptStream(t1, { aad: none });
    const dec = await kb.decryptStream(t1, { header: src.header, aad: none });
    await kb.destroyTenant(t1);
    for (const [name, fn] of [
      ['DecryptStream chunk', () => dec.open(chunk)],
      ['DecryptStream finish', () => dec.finish()],
      ['EncryptStream chunk', () => enc.seal(bytes('more'), false)],
    ] as const) {
      assert.equal(
        await codeOf(async () => fn()),
        'NOT_FOUND',
        `${name} after the receipt must fail with NOT_FOUND`,
      );
    }
  } finally {
    await kb.close();
  }
});

test('(A) DestroyCustomer aborts that customer streams only', async () => {
  const kb = await openBroker(env.hsm, env.dataDir());
  try {
    const t = ref('acme', 't1');
    await kb.createOrg(org('acme'));
    await kb.createTenant(t.org, t.tenant);
    await kb.createCustomer(t, cust('c1'));
    await kb.createCustomer(t, cust('c2'));
    const streams = new Map<string, { header: Uint8Array; chunk: Uint8Array }>();
    for (const c of ['c1', 'c2']) {
      const s = await kb.encryptStream(t, { customer: cust(c), aad: none });
      streams.set(c, { header: s.header, chunk: s.seal(bytes(`data of ${c}`), true) });
    }
    const d1 = await kb.decryptStream(t, { header: streams.get('c1')!.header, aad: none });
    const d2 = await kb.decryptStream(t, { header: streams.get('c2')!.header, aad: none });
    await kb.destroyCustomer(t, cust('c1'));
    assert.equal(await codeOf(async () => d1.open(streams.get('c1')!.chunk)), 'NOT_FOUND', 'c1 stream');
    const out = d2.open(streams.get('c2')!.chunk);
    d2.finish();
    assert.equal(text(out.plaintext), 'data of c2', 'the other customer stream keeps working');
  } finally {
    await kb.close();
  }
});

test('(B) a cold Decrypt racing DestroyTenant leaves no key of the tenant in the cache', async () => {
  const dir = env.dataDir();
  const t2 = ref('acme', 't2');
  let kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(t2.org, t2.tenant);
  const { ciphertext } = await kb.encrypt(t2, { plaintext: bytes('secret'), aad: none });
  await kb.close();
  kb = await openBroker(slowUnwraps(env.hsm, 150), dir); // cold caches, slow HSM unwraps
  try {
    assert.equal(kb.stats().cacheEntries, 0, 'cache entries before');
    const decrypting = codeOf(() => kb.decrypt(t2, { ciphertext, aad: none }));
    await new Promise((r) => setTimeout(r, 20)); // the TEK unwrap is under way
    const receipt = JSON.parse((await kb.destroyTenant(t2)).body) as {
      epoch: { destroyedOrgKeys: unknown[] };
    };
    assert.ok(receipt.epoch.destroyedOrgKeys.length > 0, 'the epoch destroyed the old OEK');
    assert.equal(kb.stats().cacheEntries, 0, 'cache entries when the receipt is returned');
    assert.equal(await decrypting, 'NOT_FOUND', 'the racing Decrypt');
    assert.equal(kb.stats().cacheEntries, 0, 'cache entries after the racing Decrypt settled');
  } finally {
    await kb.close();
  }
});

test('PQC worker caches drop a shredded tenant keys before the receipt', async () => {
  const router = new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING);
  const pool = await PqcWorkerPool.create({ size: 1 });
  const kb = await openBroker(env.hsm, env.dataDir(), {
    pqc: { runtime: new AsymmetricRuntime(router, pool) },
  });
  try {
    const t3 = ref('acme', 't3');
    await kb.createOrg(org('acme'));
    await kb.createTenant(t3.org, t3.tenant);
    const a = kb.asymmetric!;
    for (const [id, type] of [
      ['sig', 'ml-dsa-65'],
      ['composite', 'composite-mldsa65-ecdsa-p256'],
    ] as const) {
      await a.createKey(t3, id, type);
      await a.sign(t3, id, bytes('msg'), none); // offloaded: the worker caches the loaded key
    }
    assert.ok((await pool.evictKeys([])).remaining >= 2, 'the worker holds the tenant keys before the shred');
    await kb.destroyTenant(t3);
    assert.equal((await pool.evictKeys([])).remaining, 0, 'keys the worker holds after the receipt');
  } finally {
    await kb.close();
    await pool.close();
  }
});

test('freeing a loaded ML-KEM key zeroes the sealed-box seed copy', async () => {
  const openssl = new OpenSslEngine();
  const rt = new AsymmetricRuntime(
    new PqcRouter([openssl, await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  const kp = openssl.generateKeyPair('ml-kem-768');
  const seed = Uint8Array.from(kp.seed!.expose());
  const k = await loadKey(rt, env.hsm, 'ml-kem-768', 1, kp.publicKey, seed, undefined);
  const raw = k.box!.raw;
  assert.ok(
    raw.some((b) => b !== 0),
    'the sealed-box key holds its seed while loaded',
  );
  k.destroy();
  assert.ok(
    raw.every((b) => b === 0),
    'EngineHpkeKey.raw after the loaded key is freed',
  );
});
