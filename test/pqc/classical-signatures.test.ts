/**
 * Ed25519 and ECDSA P-256 helpers: round trips with raw keys, P1363 <-> DER conversion, and that
 * every tampered signature or wrong key verifies false while malformed keys are INVALID_ARGUMENT.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { p256 } from '@noble/curves/nist.js';
import { KbError } from '../../daemon/src/errors.ts';
import {
  ecdsaP256Verify,
  ed25519GenerateKeyPair,
  ed25519PrivateKey,
  ed25519Sign,
  ed25519Verify,
  softwareEcdsaP256Signer,
} from '../../daemon/src/pqc/classical-signatures.ts';
import {
  ecdsaP1363ToDer,
  isDerEcdsaSignature,
  toDerEcdsaSignature,
} from '../../daemon/src/pqc/ecdsa-encoding.ts';

const te = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('classical signature helpers', () => {
  it('Ed25519: sign/verify with a 32-byte seed; flipped bits and other keys fail', () => {
    const kp = ed25519GenerateKeyPair();
    const key = ed25519PrivateKey(kp.seed.expose());
    const sig = ed25519Sign(key, te('m'));
    assert.ok(ed25519Verify(kp.publicKey, te('m'), sig));
    for (let bit = 0; bit < 512; bit += 13) {
      const bad = Uint8Array.from(sig);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(ed25519Verify(kp.publicKey, te('m'), bad), false, `bit ${bit}`);
    }
    assert.equal(ed25519Verify(ed25519GenerateKeyPair().publicKey, te('m'), sig), false);
    assert.equal(ed25519Verify(kp.publicKey, te('m'), sig.subarray(0, 63)), false);
  });

  it('ECDSA P-256: software signer output verifies as DER, as P1363 after conversion, and with @noble', async () => {
    const signer = softwareEcdsaP256Signer();
    const der = await signer.sign(te('m'));
    assert.ok(isDerEcdsaSignature(der));
    assert.ok(ecdsaP256Verify(signer.publicKey, te('m'), der, 'der'));
    assert.ok(p256.verify(der, te('m'), signer.publicKey, { format: 'der', lowS: false }));
    const compact = p256.Signature.fromBytes(der, 'der').toBytes('compact');
    assert.ok(ecdsaP256Verify(signer.publicKey, te('m'), compact, 'p1363'));
    assert.deepEqual(ecdsaP1363ToDer(compact), der);
    assert.deepEqual(toDerEcdsaSignature(compact), der);
    assert.equal(ecdsaP256Verify(signer.publicKey, te('other'), der), false);
    assert.equal(ecdsaP256Verify(signer.publicKey, te('m'), der.subarray(1)), false);
  });

  it('malformed keys and encodings are INVALID_ARGUMENT', () => {
    const isInvalid = (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT';
    assert.throws(() => ed25519Verify(new Uint8Array(31), te('m'), new Uint8Array(64)), isInvalid);
    assert.throws(
      () => ecdsaP256Verify(Uint8Array.of(4, ...new Uint8Array(64).fill(1)), te('m'), new Uint8Array(70)),
      isInvalid,
    );
    assert.throws(() => ed25519PrivateKey(new Uint8Array(33)), isInvalid);
    assert.throws(() => toDerEcdsaSignature(new Uint8Array(63)), isInvalid);
  });
});
