/**
 * Ed25519 (RFC 8032) and ECDSA P-256 with SHA-256 (FIPS 186-5) on Node's crypto, with raw keys:
 * Ed25519 32-byte seed / public key, ECDSA uncompressed X9.62 points (0x04 ‖ x ‖ y).
 * Verification returns false for any bad signature; malformed keys are INVALID_ARGUMENT.
 * The ECDSA signer interface lets the private half be a software key or a non-extractable key
 * in the HSM (see hsmEcdsaP256Signer).
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import { assertBytes, assertOneOf } from './pqc-assert.ts';
import { PublicKeyCache } from './public-key-cache.ts';

export const ED25519_LENGTHS = { seed: 32, publicKey: 32, signature: 64 } as const;
export const ECDSA_P256_LENGTHS = { publicKey: 65, p1363Signature: 64, maxDerSignature: 72 } as const;

const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const edKeys = new PublicKeyCache<KeyObject>();
const ecKeys = new PublicKeyCache<KeyObject>();

/** A fresh Ed25519 key: the 32-byte seed (storage form) and public key. */
export function ed25519GenerateKeyPair(): { seed: SecretBytes; publicKey: Uint8Array } {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  return { seed: new SecretBytes(seed), publicKey: ed25519PublicKey(seed) };
}

export function ed25519PrivateKey(seed: Uint8Array): KeyObject {
  return createPrivateKey({
    key: buf(assertBytes('seed', seed, 32)),
    format: 'raw-private',
    asymmetricKeyType: 'ed25519',
  });
}

export function ed25519PublicKey(seed: Uint8Array | KeyObject): Uint8Array {
  const key = seed instanceof Uint8Array ? ed25519PrivateKey(seed) : seed;
  return u8(createPublicKey(key).export({ format: 'raw-public' }));
}

export function ed25519Sign(key: KeyObject, message: Uint8Array): Uint8Array {
  return u8(sign(null, assertBytes('message', message), key));
}

/** Ed25519 verify (OpenSSL: cofactorless, rejects non-canonical S, RFC 8032 §5.1.7). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const pk = assertBytes('publicKey', publicKey, 32);
  assertBytes('message', message);
  assertBytes('signature', signature, { max: 1024 });
  if (signature.length !== 64) return false;
  let key: KeyObject;
  try {
    key = edKeys.get('ed25519', pk, () =>
      createPublicKey({ key: buf(pk), format: 'raw-public', asymmetricKeyType: 'ed25519' }),
    );
  } catch (cause) {
    throw new KbError('INVALID_ARGUMENT', 'publicKey is not a valid Ed25519 key', { cause });
  }
  return verify(null, message, key, signature);
}

/** A P-256 public key from an uncompressed point (65 bytes) or SPKI DER. */
export function ecdsaP256PublicKey(publicKey: Uint8Array): KeyObject {
  assertBytes('publicKey', publicKey, { min: 65, max: 200 });
  return ecKeys.get('p256', publicKey, () => {
    try {
      const key =
        publicKey.length === 65
          ? createPublicKey({
              key: buf(publicKey),
              format: 'raw-public',
              asymmetricKeyType: 'ec',
              namedCurve: 'prime256v1',
            })
          : createPublicKey({ key: buf(publicKey), format: 'der', type: 'spki' });
      if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('not a P-256 key');
      return key;
    } catch (cause) {
      throw new KbError('INVALID_ARGUMENT', 'publicKey is not a valid P-256 key', { cause });
    }
  });
}

/** The uncompressed point of a P-256 key. */
export function ecdsaP256RawPublicKey(key: KeyObject): Uint8Array {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return u8(pub.export({ format: 'raw-public' }));
}

/** ECDSA P-256 / SHA-256 verify; `encoding` 'der' (X9.62 Ecdsa-Sig-Value) or 'p1363' (r ‖ s). */
export function ecdsaP256Verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  encoding: 'der' | 'p1363' = 'der',
): boolean {
  const key = ecdsaP256PublicKey(publicKey);
  assertBytes('message', message);
  assertBytes('signature', signature, { max: 1024 });
  assertOneOf('encoding', encoding, ['der', 'p1363'] as const);
  try {
    // DER is Node's default: the bare KeyObject spares the options object's probe (two caught
    // exceptions, about a sixth of a P-256 verify).
    const opts = encoding === 'der' ? key : { key, dsaEncoding: 'ieee-p1363' as const };
    return verify('sha256', message, opts, signature);
  } catch {
    // OpenSSL throws on some undecodable DER; for a verifier that is simply "invalid".
    return false;
  }
}

/** The ECDSA half of a composite, or any P-256 signer: software or HSM-resident. */
export interface EcdsaP256Signer {
  /** Uncompressed X9.62 point, 65 bytes. */
  readonly publicKey: Uint8Array;
  /** ECDSA-with-SHA-256 over `message`; DER or 64-byte r ‖ s. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** A software P-256 signer (fresh key, or an existing private KeyObject). */
export function softwareEcdsaP256Signer(privateKey?: KeyObject): EcdsaP256Signer {
  const key = privateKey ?? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new KbError('INVALID_ARGUMENT', 'privateKey must be P-256');
  return {
    publicKey: ecdsaP256RawPublicKey(key),
    sign: (message) => Promise.resolve(u8(sign('sha256', message, key))), // DER, Node's default
  };
}

/** Structural view of the HSM's signing calls, so pqc does not import the hsm layer. */
export interface HsmSigningPort<Ref> {
  publicKey(ref: Ref): Promise<Uint8Array>;
  sign(ref: Ref, message: Uint8Array): Promise<{ alg: string; signature: Uint8Array }>;
}

/** A P-256 signer whose private key stays non-extractable in the HSM (Hsm.sign hashes with SHA-256). */
export async function hsmEcdsaP256Signer<Ref>(hsm: HsmSigningPort<Ref>, ref: Ref): Promise<EcdsaP256Signer> {
  const spki = await hsm.publicKey(ref);
  const publicKey = ecdsaP256RawPublicKey(ecdsaP256PublicKey(spki));
  return {
    publicKey,
    sign: async (message) => {
      const r = await hsm.sign(ref, message);
      if (r.alg !== 'ecdsa-p256')
        throw new KbError('FAILED_PRECONDITION', `HSM key is ${r.alg}, not ecdsa-p256`);
      return r.signature;
    },
  };
}
