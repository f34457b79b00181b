/**
 * Composite ML-DSA-65 + ECDSA-P256, `id-MLDSA65-ECDSA-P256-SHA512` (OID 1.3.6.1.5.5.7.6.45) of
 * draft-ietf-lamps-pq-composite-sigs-19 (construction as since -08: §"Prefix, Label and CTX",
 * §"Sign", §"Verify", §"Serialization"):
 *
 *   M'  = Prefix ‖ Label ‖ len(ctx) ‖ ctx ‖ SHA-512(M)
 *         Prefix = "CompositeAlgorithmSignatures2025", Label = "COMPSIG-MLDSA65-ECDSA-P256-SHA512"
 *   sig = ML-DSA-65.Sign(sk_M, M', ctx = Label) ‖ ECDSA-P256-SHA256.Sign(sk_T, M') as Ecdsa-Sig-Value DER
 *   pk  = ML-DSA-65 pk (1952) ‖ uncompressed X9.62 P-256 point (65)
 *
 * Valid iff both halves verify. Because ML-DSA is called with ctx = Label, the ML-DSA half needs
 * an engine with `signContext` (OpenSSL; liboqs-js has no context API). The ECDSA half goes
 * through EcdsaP256Signer so it may live in the HSM.
 */
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import { ecdsaP256Verify, softwareEcdsaP256Signer, type EcdsaP256Signer } from './classical-signatures.ts';
import { toDerEcdsaSignature } from './ecdsa-encoding.ts';
import { assertBytes } from './pqc-assert.ts';
import { TAG, readTlv, tlv } from './pqc-der.ts';
import type { PqcEngine, PqcPrivateKey } from './pqc-engine.ts';
import { SIG_LENGTHS } from './pqc-params.ts';

export const COMPOSITE_OID = '1.3.6.1.5.5.7.6.45';
export const COMPOSITE_PREFIX = new TextEncoder().encode('CompositeAlgorithmSignatures2025');
export const COMPOSITE_LABEL = new TextEncoder().encode('COMPSIG-MLDSA65-ECDSA-P256-SHA512');
const ML = SIG_LENGTHS['ml-dsa-65'];
export const COMPOSITE_LENGTHS = {
  publicKey: ML.publicKey + 65,
  minSignature: ML.signature + 8,
  maxSignature: ML.signature + 72,
} as const;

/** M' for `message` and application context `ctx` (at most 255 bytes). */
export function compositeMessageRepresentative(
  message: Uint8Array,
  ctx: Uint8Array = new Uint8Array(0),
): Uint8Array {
  assertBytes('message', message);
  assertBytes('context', ctx, { max: 255 });
  const ph = createHash('sha512').update(message).digest();
  const out = new Uint8Array(COMPOSITE_PREFIX.length + COMPOSITE_LABEL.length + 1 + ctx.length + ph.length);
  let o = 0;
  for (const part of [COMPOSITE_PREFIX, COMPOSITE_LABEL, Uint8Array.of(ctx.length), ctx, ph]) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

/** The composite signing key: an ML-DSA-65 key on an engine, and a P-256 signer. */
/** A composite signature: the ML-DSA-65 signature, then the ECDSA one in DER (raw r‖s given). */
export function compositeSignature(mlDsaSignature: Uint8Array, ecdsaRaw: Uint8Array): Uint8Array {
  const der = toDerEcdsaSignature(ecdsaRaw);
  const out = new Uint8Array(mlDsaSignature.length + der.length);
  out.set(mlDsaSignature, 0);
  out.set(der, mlDsaSignature.length);
  return out;
}

export interface CompositeSigningKey {
  readonly mlDsa: PqcPrivateKey;
  readonly ecdsa: EcdsaP256Signer;
}

/** pk = mldsaPK ‖ tradPK. */
export function compositePublicKey(mlDsaPublicKey: Uint8Array, ecdsaPublicKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(COMPOSITE_LENGTHS.publicKey);
  out.set(assertBytes('mlDsaPublicKey', mlDsaPublicKey, ML.publicKey), 0);
  const ec = assertBytes('ecdsaPublicKey', ecdsaPublicKey, 65);
  if (ec[0] !== 0x04) throw new KbError('INVALID_ARGUMENT', 'ecdsaPublicKey must be an uncompressed point');
  out.set(ec, ML.publicKey);
  return out;
}

export class CompositeMlDsa65EcdsaP256 {
  readonly #engine: PqcEngine;

  /** `engine` runs the ML-DSA half; it must support context strings (the Label is the ctx). */
  constructor(engine: PqcEngine) {
    if (!engine.capabilities.signContext) {
      throw new KbError(
        'FAILED_PRECONDITION',
        `engine ${engine.name} lacks ML-DSA context strings needed by composite`,
      );
    }
    this.#engine = engine;
  }

  async sign(key: CompositeSigningKey, message: Uint8Array, ctx?: Uint8Array): Promise<Uint8Array> {
    if (key.mlDsa.alg !== 'ml-dsa-65') throw new KbError('INVALID_ARGUMENT', 'mlDsa key must be ml-dsa-65');
    const mPrime = compositeMessageRepresentative(message, ctx);
    // Both halves always run (draft: do not reveal which component failed).
    const [mlSig, ecSig] = await Promise.all([
      Promise.resolve().then(() => this.#engine.sign(key.mlDsa, mPrime, COMPOSITE_LABEL)),
      key.ecdsa.sign(mPrime),
    ]);
    return compositeSignature(mlSig, ecSig);
  }

  /** True iff both component signatures verify over M'. Malformed input is simply invalid. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, ctx?: Uint8Array): boolean {
    const pk = assertBytes('publicKey', publicKey, COMPOSITE_LENGTHS.publicKey);
    assertBytes('signature', signature, { max: 64 * 1024 });
    const mPrime = compositeMessageRepresentative(message, ctx);
    if (
      signature.length < COMPOSITE_LENGTHS.minSignature ||
      signature.length > COMPOSITE_LENGTHS.maxSignature
    )
      return false;
    const mlOk = this.#engine.verify(
      'ml-dsa-65',
      pk.subarray(0, ML.publicKey),
      mPrime,
      signature.subarray(0, ML.signature),
      COMPOSITE_LABEL,
    );
    if (!mlOk) return false;
    return ecdsaP256Verify(pk.subarray(ML.publicKey), mPrime, signature.subarray(ML.signature), 'der');
  }
}

/**
 * SerializePrivateKey of the draft (§"Serialization"), for a software ECDSA half:
 * ML-DSA seed (32 B) ‖ ECPrivateKey (RFC 5915) with the curve parameters and without publicKey.
 * An HSM-resident ECDSA half has no serialization; the caller stores its HSM label instead.
 */
export function generateCompositeKeyPair(engine: PqcEngine): {
  publicKey: Uint8Array;
  privateKey: SecretBytes;
} {
  if (!engine.capabilities.keygenFromSeed)
    throw new KbError('FAILED_PRECONDITION', `engine ${engine.name} cannot keygen from seed`);
  const ml = engine.generateKeyPair('ml-dsa-65');
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const sec1 = new Uint8Array(ec.privateKey.export({ format: 'der', type: 'sec1' }));
  const ecPrivateKey = stripEcPublicKey(sec1);
  sec1.fill(0);
  const seed = ml.seed?.expose() ?? new Uint8Array(0);
  const sk = new Uint8Array(32 + ecPrivateKey.length);
  sk.set(seed, 0);
  sk.set(ecPrivateKey, 32);
  ecPrivateKey.fill(0);
  ml.seed?.destroy();
  ml.secretKey.destroy();
  return {
    publicKey: compositePublicKey(ml.publicKey, softwareEcdsaP256Signer(ec.privateKey).publicKey),
    privateKey: new SecretBytes(sk),
  };
}

/** DeserializePrivateKey: the signing key (ML-DSA on `engine`, ECDSA in software) and its public key. */
export function loadCompositePrivateKey(
  engine: PqcEngine,
  privateKey: Uint8Array,
): { key: CompositeSigningKey; publicKey: Uint8Array } {
  const sk = assertBytes('privateKey', privateKey, { min: 32 + 8, max: 32 + 200 });
  const mlDsa = engine.loadPrivateKey('ml-dsa-65', 'seed', sk.subarray(0, 32));
  let ecdsa: EcdsaP256Signer;
  try {
    const der = sk.subarray(32);
    ecdsa = softwareEcdsaP256Signer(
      createPrivateKey({
        key: Buffer.from(der.buffer, der.byteOffset, der.byteLength),
        format: 'der',
        type: 'sec1',
      }),
    );
  } catch (cause) {
    mlDsa.destroy();
    throw new KbError('INVALID_ARGUMENT', 'privateKey does not hold a P-256 ECPrivateKey', { cause });
  }
  return { key: { mlDsa, ecdsa }, publicKey: compositePublicKey(mlDsa.publicKey, ecdsa.publicKey) };
}

/** ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters, [1] publicKey }: drop [1]. */
function stripEcPublicKey(sec1: Uint8Array): Uint8Array {
  const outer = readTlv(sec1, 0);
  const parts: Uint8Array[] = [];
  for (let off = outer.start; off < outer.end;) {
    const t = readTlv(sec1, off);
    if (t.tag !== 0xa1) parts.push(sec1.subarray(off, t.end));
    off = t.end;
  }
  return tlv(TAG.SEQUENCE, ...parts);
}
