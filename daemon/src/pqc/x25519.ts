/**
 * X25519 (RFC 7748) on Node's crypto with raw 32-byte keys, for X-Wing and the classical vectors.
 * OpenSSL refuses to return the all-zero output of a low-order peer point; RFC 7748 §6.1 defines
 * that output as 32 zero bytes and leaves the check to the protocol, so `x25519` returns zeros
 * and `x25519Checked` is the variant that rejects it.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { KbError } from '../errors.ts';
import { assertBytes } from './pqc-assert.ts';
import { PublicKeyCache } from './public-key-cache.ts';

const publicKeys = new PublicKeyCache<KeyObject>();

export const X25519_LENGTHS = { privateKey: 32, publicKey: 32, sharedSecret: 32 } as const;

function buf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function u8(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A KeyObject for a raw X25519 private scalar (clamping is applied by X25519 itself). */
export function x25519PrivateKey(privateKey: Uint8Array): KeyObject {
  return createPrivateKey({
    key: buf(assertBytes('privateKey', privateKey, 32)),
    format: 'raw-private',
    asymmetricKeyType: 'x25519',
  });
}

/** The public u-coordinate for a private scalar. */
export function x25519PublicKey(privateKey: Uint8Array | KeyObject): Uint8Array {
  const key = privateKey instanceof Uint8Array ? x25519PrivateKey(privateKey) : privateKey;
  return u8(createPublicKey(key).export({ format: 'raw-public' }));
}

/** A fresh ephemeral key pair (OpenSSL frees the private scalar with the KeyObject). */
export function x25519Ephemeral(): { privateKey: KeyObject; publicKey: Uint8Array } {
  const kp = generateKeyPairSync('x25519');
  return { privateKey: kp.privateKey, publicKey: u8(kp.publicKey.export({ format: 'raw-public' })) };
}

/**
 * X25519(k, u) per RFC 7748; a low-order u yields 32 zero bytes as the RFC defines. Set
 * `cachePublicKey` for long-lived peer keys (recipients), not for one-time ciphertext shares.
 */
export function x25519(
  privateKey: Uint8Array | KeyObject,
  publicKey: Uint8Array,
  cachePublicKey = false,
): Uint8Array {
  const priv = privateKey instanceof Uint8Array ? x25519PrivateKey(privateKey) : privateKey;
  assertBytes('publicKey', publicKey, 32);
  const make = (): KeyObject =>
    createPublicKey({ key: buf(publicKey), format: 'raw-public', asymmetricKeyType: 'x25519' });
  const pub = cachePublicKey ? publicKeys.get('x25519', publicKey, make) : make();
  try {
    return u8(diffieHellman({ privateKey: priv, publicKey: pub }));
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_OSSL_FAILED_DURING_DERIVATION') return new Uint8Array(32);
    throw err;
  }
}

/** X25519 that rejects an all-zero result (RFC 7748 §6.1 "check"), for protocols that require it. */
export function x25519Checked(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array): Uint8Array {
  const out = x25519(privateKey, publicKey);
  if (out.every((b) => b === 0)) throw new KbError('INVALID_ARGUMENT', 'publicKey is a low-order point');
  return out;
}
