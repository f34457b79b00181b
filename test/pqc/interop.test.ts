/**
 * Cross-engine interop for every ML-KEM and ML-DSA parameter set: keys, ciphertexts and
 * signatures made by one engine are accepted by the other and by @noble/post-quantum (third,
 * independent oracle), and the oracle's are accepted by both engines.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024, ml_kem512, ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { PqcEngine } from '../../daemon/src/pqc/pqc-engine.ts';
import { KEM_ALGORITHMS, SIG_ALGORITHMS } from '../../daemon/src/pqc/pqc-params.ts';
import { ENGINES } from './engines.ts';
import { eq } from './vectors.ts';

const NOBLE_KEM = { 'ml-kem-512': ml_kem512, 'ml-kem-768': ml_kem768, 'ml-kem-1024': ml_kem1024 } as const;
const NOBLE_SIG = { 'ml-dsa-44': ml_dsa44, 'ml-dsa-65': ml_dsa65, 'ml-dsa-87': ml_dsa87 } as const;
const other = (e: PqcEngine): PqcEngine => ENGINES.find((x) => x !== e) as PqcEngine;

describe('ML-KEM interop', () => {
  for (const alg of KEM_ALGORITHMS) {
    for (const maker of ENGINES) {
      it(`${alg}: key pair from ${maker.name} works on ${other(maker).name} and noble`, () => {
        const kp = maker.generateKeyPair(alg);
        const sk = kp.secretKey.expose();
        const peer = other(maker);
        const mine = maker.loadPrivateKey(alg, 'expanded', sk, kp.publicKey);
        const theirs = peer.loadPrivateKey(alg, 'expanded', sk, kp.publicKey);
        // Ciphertext from the maker opens on the peer and on noble, and vice versa.
        const e1 = maker.encapsulate(alg, kp.publicKey);
        assert.ok(
          eq(peer.decapsulate(theirs, e1.cipherText), e1.sharedSecret),
          `${peer.name} decapsulates ${maker.name}`,
        );
        assert.ok(eq(NOBLE_KEM[alg].decapsulate(e1.cipherText, sk), e1.sharedSecret), 'noble decapsulates');
        const e2 = peer.encapsulate(alg, kp.publicKey);
        assert.ok(
          eq(maker.decapsulate(mine, e2.cipherText), e2.sharedSecret),
          `${maker.name} decapsulates ${peer.name}`,
        );
        const e3 = NOBLE_KEM[alg].encapsulate(kp.publicKey);
        assert.ok(
          eq(maker.decapsulate(mine, e3.cipherText), e3.sharedSecret) &&
            eq(peer.decapsulate(theirs, e3.cipherText), e3.sharedSecret),
        );
      });
    }
    for (const maker of ENGINES) {
      it(`${alg}: encapsulateMany on ${maker.name}: every item is fresh and opens on both engines and noble`, () => {
        const kp = maker.generateKeyPair(alg);
        const sk = kp.secretKey.expose();
        const keys = ENGINES.map((e) => e.loadPrivateKey(alg, 'expanded', sk, kp.publicKey));
        const items = maker.encapsulateMany(alg, kp.publicKey, 5);
        assert.equal(items.length, 5);
        assert.equal(
          new Set(items.map((e) => Buffer.from(e.cipherText).toString('hex'))).size,
          5,
          'ciphertexts repeat',
        );
        assert.equal(
          new Set(items.map((e) => Buffer.from(e.sharedSecret).toString('hex'))).size,
          5,
          'secrets repeat',
        );
        for (const e of items) {
          ENGINES.forEach((engine, i) =>
            assert.ok(
              eq(engine.decapsulate(keys[i]!, e.cipherText), e.sharedSecret),
              `${engine.name} decapsulates`,
            ),
          );
          assert.ok(eq(NOBLE_KEM[alg].decapsulate(e.cipherText, sk), e.sharedSecret), 'noble decapsulates');
        }
        assert.deepEqual(maker.encapsulateMany(alg, kp.publicKey, 0), []);
      });
    }
    it(`${alg}: a noble key pair works on both engines; the seed form matches openssl keygen`, () => {
      const seed = crypto.getRandomValues(new Uint8Array(64));
      const kp = NOBLE_KEM[alg].keygen(seed);
      const fromSeed = ENGINES[0]!.generateKeyPair(alg, seed);
      assert.ok(eq(fromSeed.publicKey, kp.publicKey) && eq(fromSeed.secretKey.expose(), kp.secretKey));
      for (const e of ENGINES) {
        const key = e.loadPrivateKey(alg, 'expanded', kp.secretKey, kp.publicKey);
        const enc = e.encapsulate(alg, kp.publicKey);
        assert.ok(eq(e.decapsulate(key, enc.cipherText), enc.sharedSecret), e.name);
      }
    });
  }
});

describe('ML-DSA interop', () => {
  const msg = new TextEncoder().encode('interop message');
  for (const alg of SIG_ALGORITHMS) {
    for (const maker of ENGINES) {
      it(`${alg}: key and signature from ${maker.name} verify on ${other(maker).name} and noble`, () => {
        const kp = maker.generateKeyPair(alg);
        const peer = other(maker);
        const sk = kp.secretKey.expose();
        const sig = maker.sign(maker.loadPrivateKey(alg, 'expanded', sk, kp.publicKey), msg);
        assert.ok(peer.verify(alg, kp.publicKey, msg, sig), `${peer.name} verifies`);
        assert.ok(NOBLE_SIG[alg].verify(sig, msg, kp.publicKey), 'noble verifies');
        const sig2 = peer.sign(peer.loadPrivateKey(alg, 'expanded', sk, kp.publicKey), msg);
        assert.ok(
          maker.verify(alg, kp.publicKey, msg, sig2) && NOBLE_SIG[alg].verify(sig2, msg, kp.publicKey),
        );
        const sig3 = NOBLE_SIG[alg].sign(msg, sk);
        assert.ok(maker.verify(alg, kp.publicKey, msg, sig3) && peer.verify(alg, kp.publicKey, msg, sig3));
        assert.ok(!peer.verify(alg, kp.publicKey, new Uint8Array(1), sig), 'other message must fail');
      });
    }
    it(`${alg}: with a context string, openssl and noble agree (liboqs refuses the context)`, () => {
      const seed = crypto.getRandomValues(new Uint8Array(32));
      const kp = ENGINES[0]!.generateKeyPair(alg, seed);
      const noble = NOBLE_SIG[alg].keygen(seed);
      assert.ok(
        eq(noble.publicKey, kp.publicKey) && eq(noble.secretKey, kp.secretKey.expose()),
        'seed expansion agrees',
      );
      const ctx = new TextEncoder().encode('ctx');
      const sig = ENGINES[0]!.sign(ENGINES[0]!.loadPrivateKey(alg, 'seed', seed), msg, ctx);
      assert.ok(NOBLE_SIG[alg].verify(sig, msg, kp.publicKey, { context: ctx }));
      assert.ok(!ENGINES[0]!.verify(alg, kp.publicKey, msg, sig), 'empty context must not verify');
      assert.ok(
        ENGINES[0]!.verify(
          alg,
          kp.publicKey,
          msg,
          NOBLE_SIG[alg].sign(msg, noble.secretKey, { context: ctx }),
          ctx,
        ),
      );
      assert.throws(
        () => ENGINES[1]!.verify(alg, kp.publicKey, msg, sig, ctx),
        /does not support ML-DSA context/,
      );
    });
  }
});
