/**
 * Composite ML-DSA-65 + ECDSA-P256 (draft-ietf-lamps-pq-composite-sigs-19): M' known answer,
 * round trip with a software and an HSM-style signer, independent verification of both halves by
 * @noble, and the failures that make it a composite: either half stripped, halves swapped from
 * another message, re-labelled, other context, component used standalone.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { describe, it } from 'node:test';
import { p256 } from '@noble/curves/nist.js';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { KbError } from '../../daemon/src/errors.ts';
import type { Hsm, HsmKeyRef } from '../../daemon/src/hsm/hsm.ts';
import {
  type HsmSigningPort,
  ecdsaP256RawPublicKey,
  hsmEcdsaP256Signer,
  softwareEcdsaP256Signer,
} from '../../daemon/src/pqc/classical-signatures.ts';
import {
  COMPOSITE_LABEL,
  CompositeMlDsa65EcdsaP256,
  compositeMessageRepresentative,
  compositePublicKey,
  generateCompositeKeyPair,
  loadCompositePrivateKey,
  type CompositeSigningKey,
} from '../../daemon/src/pqc/composite-mldsa65-ecdsa-p256.ts';
import { liboqs, openssl } from './engines.ts';
import { eq } from './vectors.ts';

const composite = new CompositeMlDsa65EcdsaP256(openssl);
const te = (s: string): Uint8Array => new TextEncoder().encode(s);
const ML_SIG = 3309;

function newKey(): { key: CompositeSigningKey; publicKey: Uint8Array } {
  const kp = openssl.generateKeyPair('ml-dsa-65');
  const mlDsa = openssl.loadPrivateKey('ml-dsa-65', 'seed', kp.seed!.expose());
  const ecdsa = softwareEcdsaP256Signer();
  return { key: { mlDsa, ecdsa }, publicKey: compositePublicKey(kp.publicKey, ecdsa.publicKey) };
}

describe('composite ML-DSA-65 + ECDSA-P256', () => {
  it("M' matches the draft's message-representative example (M = 00..09, empty ctx)", () => {
    const expected =
      '436f6d706f73697465416c676f726974686d5369676e61747572657332303235' + // "CompositeAlgorithmSignatures2025"
      Buffer.from('COMPSIG-MLDSA65-ECDSA-P256-SHA512').toString('hex') +
      '00' +
      '0f89ee1fcb7b0a4f7809d1267a029719004c5a5e5ec323a7c3523a20974f9a3f202f56fadba4cd9e8d654ab9f2e96dc5c795ea176fa20ede8d854c342f903533';
    const m = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(Buffer.from(compositeMessageRepresentative(m)).toString('hex'), expected);
    const withCtx = compositeMessageRepresentative(
      m,
      Uint8Array.from(Buffer.from('0813061205162623', 'hex')),
    );
    assert.equal(
      Buffer.from(withCtx).toString('hex'),
      expected.replace(/00(0f89ee)/, '080813061205162623$1'),
    );
  });

  it("round trip; both halves verify independently with @noble (ML-DSA ctx = Label, ECDSA over M')", async () => {
    const { key, publicKey } = newKey();
    const msg = te('a document');
    const ctx = te('app-ctx');
    const sig = await composite.sign(key, msg, ctx);
    assert.ok(composite.verify(publicKey, msg, sig, ctx));
    const mPrime = compositeMessageRepresentative(msg, ctx);
    assert.ok(
      ml_dsa65.verify(sig.subarray(0, ML_SIG), mPrime, publicKey.subarray(0, 1952), {
        context: COMPOSITE_LABEL,
      }),
    );
    assert.ok(
      p256.verify(sig.subarray(ML_SIG), mPrime, publicKey.subarray(1952), { format: 'der', lowS: false }),
    );
  });

  it('the ECDSA half can be an HSM key (signer returning r ‖ s or DER)', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const spki = new Uint8Array(ec.publicKey.export({ format: 'der', type: 'spki' }));
    for (const encoding of ['ieee-p1363', 'der'] as const) {
      const port = {
        publicKey: () => Promise.resolve(spki),
        sign: (_ref: string, m: Uint8Array) =>
          Promise.resolve({
            alg: 'ecdsa-p256',
            signature: new Uint8Array(nodeSign('sha256', m, { key: ec.privateKey, dsaEncoding: encoding })),
          }),
      };
      const ecdsa = await hsmEcdsaP256Signer(port, 'tenant-sign-1');
      assert.ok(eq(ecdsa.publicKey, ecdsaP256RawPublicKey(ec.publicKey)));
      const kp = openssl.generateKeyPair('ml-dsa-65');
      const mlDsa = openssl.loadPrivateKey('ml-dsa-65', 'seed', kp.seed!.expose());
      const pk = compositePublicKey(kp.publicKey, ecdsa.publicKey);
      const sig = await composite.sign({ mlDsa, ecdsa }, te('m'));
      assert.ok(composite.verify(pk, te('m'), sig), encoding);
    }
  });

  it('fails when either half is stripped, halves are swapped, the label or context changes', async () => {
    const { key, publicKey } = newKey();
    const a = te('message A');
    const b = te('message B');
    const sigA = await composite.sign(key, a);
    const sigB = await composite.sign(key, b);
    const mlA = sigA.subarray(0, ML_SIG);
    const ecA = sigA.subarray(ML_SIG);
    const ecB = sigB.subarray(ML_SIG);
    const concat = (...p: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(p));
    // A valid ECDSA signature over the same M' but with another label (relabelling attack).
    const otherLabel = concat(
      te('CompositeAlgorithmSignatures2025'),
      te('COMPSIG-MLDSA44-ECDSA-P256-SHA256'),
      Uint8Array.of(0),
      createHash('sha512').update(a).digest(),
    );
    const ecOther = await key.ecdsa.sign(otherLabel);
    const cases: [string, Uint8Array, Uint8Array, Uint8Array | undefined][] = [
      ['ML-DSA half only', mlA, a, undefined],
      ['ECDSA half only', ecA, a, undefined],
      ['ML-DSA half with an empty ECDSA half', concat(mlA, new Uint8Array(8)), a, undefined],
      ['ECDSA half swapped in from message B', concat(mlA, ecB), a, undefined],
      ['whole signature of B presented for A', sigB, a, undefined],
      ['ECDSA half made under another label', concat(mlA, ecOther), a, undefined],
      ['other context', sigA, a, te('x')],
      ['truncated by one byte', sigA.subarray(0, sigA.length - 1), a, undefined],
    ];
    for (const [name, sig, msg, ctx] of cases) {
      assert.equal(composite.verify(publicKey, msg, sig, ctx), false, name);
    }
    // Components are bound to the composite: standalone use of the ML-DSA half fails.
    assert.equal(
      openssl.verify('ml-dsa-65', publicKey.subarray(0, 1952), a, mlA),
      false,
      'ML-DSA half over M standalone',
    );
    const mPrime = compositeMessageRepresentative(a);
    assert.equal(
      openssl.verify('ml-dsa-65', publicKey.subarray(0, 1952), mPrime, mlA),
      false,
      "ML-DSA half over M' without Label ctx",
    );
    assert.ok(composite.verify(publicKey, a, sigA), 'the untouched signature still verifies');
  });

  it('every single-bit flip of the signature fails (sampled every 7th bit)', async () => {
    const { key, publicKey } = newKey();
    const msg = te('bits');
    const sig = await composite.sign(key, msg);
    for (let bit = 0; bit < sig.length * 8; bit += 7) {
      const bad = Uint8Array.from(sig);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(composite.verify(publicKey, msg, bad), false, `bit ${bit}`);
    }
  });

  it('serialized private key (ML-DSA seed ‖ ECPrivateKey without publicKey) round-trips and signs', async () => {
    const { publicKey, privateKey } = generateCompositeKeyPair(openssl);
    const sk = privateKey.expose();
    const ecPart = sk.subarray(32);
    assert.equal(ecPart[0], 0x30, 'ECPrivateKey is a SEQUENCE');
    // 30 31 | 02 01 01 | 04 20 d | a0 0a <prime256v1>: 51 bytes; with the [1] publicKey it would be 121.
    assert.equal(ecPart.length, 51, 'ECPrivateKey without the publicKey field');
    const loaded = loadCompositePrivateKey(openssl, sk);
    assert.ok(eq(loaded.publicKey, publicKey));
    const sig = await composite.sign(loaded.key, te('stored key'));
    assert.ok(composite.verify(publicKey, te('stored key'), sig));
    assert.throws(
      () =>
        loadCompositePrivateKey(
          openssl,
          Uint8Array.from(Buffer.concat([sk.subarray(0, 32), new Uint8Array(20)])),
        ),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
  });

  it('refuses an engine without ML-DSA context strings, and bad inputs are INVALID_ARGUMENT', () => {
    assert.throws(
      () => new CompositeMlDsa65EcdsaP256(liboqs),
      (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION',
    );
    const isInvalid = (param: string) => (e: unknown) =>
      e instanceof KbError && e.code === 'INVALID_ARGUMENT' && e.message.includes(param);
    assert.throws(
      () => composite.verify(new Uint8Array(10), te('m'), new Uint8Array(3400)),
      isInvalid('publicKey'),
    );
    assert.throws(() => compositeMessageRepresentative(te('m'), new Uint8Array(256)), isInvalid('context'));
    assert.throws(
      () => compositePublicKey(new Uint8Array(1952), new Uint8Array(65)),
      isInvalid('ecdsaPublicKey'),
    );
  });
});

// Compile-time check: the real Hsm interface fits the port the composite's HSM signer needs.
const _hsmFitsSigningPort = (hsm: Hsm): HsmSigningPort<HsmKeyRef> => hsm;
