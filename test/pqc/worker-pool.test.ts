/**
 * PqcWorkerPool: every operation round-trips through real worker threads running the .ts worker
 * (type stripping), results interoperate with in-process engines, errors keep their code and safe
 * detail, the queue is bounded, caller buffers are never detached, close() drains.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { AsymmetricRuntime, generateKey } from '../../daemon/src/keys/asymmetric-key-material.ts';
import type { Hsm } from '../../daemon/src/hsm/hsm.ts';
import {
  CompositeMlDsa65EcdsaP256,
  loadCompositePrivateKey,
} from '../../daemon/src/pqc/composite-mldsa65-ecdsa-p256.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { PqcWorkerPool } from '../../daemon/src/pqc/pqc-worker-pool.ts';
import { XWing } from '../../daemon/src/pqc/xwing.ts';
import { liboqs, openssl } from './engines.ts';
import { eq } from './vectors.ts';

describe('pqc worker pool', () => {
  let pool: PqcWorkerPool;
  before(async () => {
    pool = await PqcWorkerPool.create({ size: 2 });
  });
  after(async () => {
    await pool.close();
  });

  for (const engine of ['openssl', 'liboqs'] as const) {
    it(`ML-DSA-65 keygen/sign/verify through the pool on ${engine}; signatures verify in-process`, async () => {
      const kp = await pool.generateKeyPair('openssl', 'ml-dsa-65');
      const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
      const msg = new TextEncoder().encode('pooled');
      const sigs = await Promise.all([1, 2, 3, 4, 5].map(() => pool.sign(engine, 'ml-dsa-65', key, msg)));
      for (const sig of sigs) {
        assert.ok(
          openssl.verify('ml-dsa-65', kp.publicKey, msg, sig) &&
            liboqs.verify('ml-dsa-65', kp.publicKey, msg, sig),
        );
        assert.equal(await pool.verify(engine, 'ml-dsa-65', kp.publicKey, msg, sig), true);
      }
      assert.equal(await pool.verify(engine, 'ml-dsa-65', kp.publicKey, new Uint8Array(1), sigs[0]!), false);
    });

    it(`ML-KEM-768 encapsulate/decapsulate through the pool on ${engine}`, async () => {
      const kp = openssl.generateKeyPair('ml-kem-768');
      const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
      const enc = await pool.encapsulate(engine, 'ml-kem-768', kp.publicKey);
      assert.ok(eq(await pool.decapsulate(engine, 'ml-kem-768', key, enc.cipherText), enc.sharedSecret));
      const inProc = openssl.loadPrivateKey('ml-kem-768', 'seed', kp.seed!.expose());
      assert.ok(eq(openssl.decapsulate(inProc, enc.cipherText), enc.sharedSecret));
    });
  }

  it('a context string is refused by liboqs in the worker, served by openssl', async () => {
    const kp = openssl.generateKeyPair('ml-dsa-65');
    const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
    const ctx = new Uint8Array([1, 2]);
    await assert.rejects(
      pool.sign('liboqs', 'ml-dsa-65', key, new Uint8Array(1), ctx),
      (e: unknown) => e instanceof KbError && e.code === 'UNIMPLEMENTED',
    );
    const sig = await pool.sign('openssl', 'ml-dsa-65', key, new Uint8Array(1), ctx);
    assert.ok(openssl.verify('ml-dsa-65', kp.publicKey, new Uint8Array(1), sig, ctx));
  });

  it('signMany / verifyMany: one round trip per batch, per-item user errors in place', async () => {
    const kp = openssl.generateKeyPair('ml-dsa-65');
    const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
    const msgs = [1, 2, 3, 4].map((i) => new TextEncoder().encode(`item ${i}`));
    const sigs = await pool.signMany('liboqs', 'ml-dsa-65', key, msgs);
    const values = sigs.map((r, i) => {
      assert.ok(r.ok, `item ${i}`);
      return r.value;
    });
    const items = values.map((signature, i) => ({ publicKey: kp.publicKey, message: msgs[i]!, signature }));
    items.push({ publicKey: kp.publicKey, message: msgs[0]!, signature: values[1]! }); // wrong message
    items.push({ publicKey: new Uint8Array(5), message: msgs[0]!, signature: values[0]! }); // malformed key
    const res = await pool.verifyMany('openssl', 'ml-dsa-65', items);
    assert.deepEqual(
      res.slice(0, 5).map((r) => r.ok && r.value),
      [true, true, true, true, false],
    );
    const last = res[5]!;
    assert.ok(!last.ok && last.error.code === 'INVALID_ARGUMENT' && /publicKey/.test(last.error.message));
    await assert.rejects(
      pool.verifyMany(
        'openssl',
        'ml-dsa-65',
        Array.from({ length: 1025 }, () => items[0]!),
      ),
      (e: unknown) => e instanceof KbError && e.code === 'TOO_LARGE',
    );
  });

  it('errors keep their code and safe detail', async () => {
    await assert.rejects(
      pool.verify('openssl', 'ml-dsa-65', new Uint8Array(3), new Uint8Array(1), new Uint8Array(3309)),
      (e: unknown) =>
        e instanceof KbError &&
        e.code === 'INVALID_ARGUMENT' &&
        /publicKey must be 1952 bytes/.test(e.message),
    );
    await assert.rejects(
      pool.generateKeyPair('liboqs', 'ml-kem-768', new Uint8Array(64)),
      (e: unknown) => e instanceof KbError && e.code === 'UNIMPLEMENTED',
    );
  });

  it('decapsulateMany: one round trip, per-item results in order, a bad item fails alone', async () => {
    const kp = openssl.generateKeyPair('ml-kem-768');
    const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
    const encs = [1, 2, 3].map(() => openssl.encapsulate('ml-kem-768', kp.publicKey));
    for (const engine of ['openssl', 'liboqs'] as const) {
      const r = await pool.decapsulateMany(engine, 'ml-kem-768', key, [
        encs[0]!.cipherText,
        new Uint8Array(5),
        encs[1]!.cipherText,
        encs[2]!.cipherText,
      ]);
      assert.equal(r.length, 4, `${engine}: one result per ciphertext`);
      assert.ok(r[0]?.ok && eq(r[0].value, encs[0]!.sharedSecret), `${engine}: item 0`);
      assert.equal(r[1]?.ok, false, `${engine}: a 5-byte ciphertext fails its own item`);
      assert.ok(r[2]?.ok && eq(r[2].value, encs[1]!.sharedSecret), `${engine}: item 2`);
      assert.ok(r[3]?.ok && eq(r[3].value, encs[2]!.sharedSecret), `${engine}: item 3`);
    }
  });

  it('X-Wing and composite keys are generated on a worker; the keys work in-process', async () => {
    const xwing = new XWing(openssl);
    const x = await pool.generateHybridKey('x-wing');
    assert.equal(x.secret.expose().length, 32, 'X-Wing secret is the 32-byte seed');
    const xk = xwing.loadPrivateKey(x.secret.expose(), x.publicKey); // throws if the public key differs
    const enc = xwing.encapsulate(x.publicKey);
    assert.ok(eq(xwing.decapsulate(xk, enc.cipherText), enc.sharedSecret), 'X-Wing round trip');
    xk.destroy();
    const c = await pool.generateHybridKey('composite-mldsa65-ecdsa-p256');
    const loaded = loadCompositePrivateKey(openssl, c.secret.expose());
    assert.ok(eq(loaded.publicKey, c.publicKey), 'composite secret derives the returned public key');
    const comp = new CompositeMlDsa65EcdsaP256(openssl);
    const msg = new TextEncoder().encode('hybrid keygen');
    const sig = await comp.sign(loaded.key, msg, new Uint8Array(0));
    assert.ok(comp.verify(c.publicKey, msg, sig, new Uint8Array(0)), 'composite sign/verify');
    loaded.key.mlDsa.destroy();
  });

  it('with keygen offloaded, generateKey sends X-Wing and software-composite keygen to the pool', async () => {
    const rt = new AsymmetricRuntime(new PqcRouter([openssl, liboqs], DEFAULT_PQC_ROUTING), pool);
    const kinds: string[] = [];
    const real = pool.generateHybridKey.bind(pool);
    pool.generateHybridKey = (kind) => {
      kinds.push(kind);
      return real(kind);
    };
    try {
      const noHsm = {} as Hsm; // not reached: neither key lives in the HSM
      for (const type of ['x-wing', 'composite-mldsa65-ecdsa-p256'] as const) {
        const g = await generateKey(rt, noHsm, type, false);
        assert.ok(g.publicKey.length > 0, `${type}: public key`);
        g.secret.destroy();
      }
    } finally {
      pool.generateHybridKey = real;
    }
    assert.deepEqual(kinds, ['x-wing', 'composite-mldsa65-ecdsa-p256'], 'pool calls of generateKey');
  });

  it("does not detach or modify the caller's buffers", async () => {
    const kp = openssl.generateKeyPair('ml-kem-768');
    const pk = Uint8Array.from(kp.publicKey);
    await pool.encapsulate('openssl', 'ml-kem-768', pk);
    assert.equal(pk.byteLength, 1184);
    assert.ok(eq(pk, kp.publicKey));
  });

  it('the queue is bounded: excess work fails fast with POOL_EXHAUSTED', async () => {
    const small = await PqcWorkerPool.create({ size: 1, maxQueue: 4, maxBatch: 1 });
    try {
      const kp = openssl.generateKeyPair('ml-dsa-65');
      const key = { form: 'seed' as const, bytes: kp.seed!.expose(), publicKey: kp.publicKey };
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, () => small.sign('openssl', 'ml-dsa-65', key, new Uint8Array(8))),
      );
      const exhausted = results.filter(
        (r) => r.status === 'rejected' && r.reason instanceof KbError && r.reason.code === 'POOL_EXHAUSTED',
      );
      assert.ok(exhausted.length > 0, 'some calls must be refused');
      assert.ok(
        results.some((r) => r.status === 'fulfilled'),
        'the rest are served',
      );
    } finally {
      await small.close();
    }
    await assert.rejects(
      small.verify('openssl', 'ml-dsa-65', new Uint8Array(1952), new Uint8Array(1), new Uint8Array(1)),
      (e: unknown) => e instanceof KbError && e.code === 'SHUTTING_DOWN',
    );
  });
});
