/**
 * Input checks FIPS 203 and FIPS 204 require before a key is used, written out for engines
 * that do not perform them themselves (liboqs-js exposes no key-validation API). Pure functions
 * on the encodings; hashes come from @noble/hashes so the liboqs engine stays OpenSSL-free.
 */
import { sha3_256, shake256 } from '@noble/hashes/sha3.js';
import { KEM_LENGTHS, SIG_LENGTHS, type KemAlgorithm, type SigAlgorithm } from './pqc-params.ts';

const Q_KEM = 3329;

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** FIPS 203 §7.2 modulus check: every 12-bit coefficient of ek's t-hat is below q = 3329. */
export function mlKemModulusCheck(alg: KemAlgorithm, ek: Uint8Array): boolean {
  const polyBytes = ek.length - 32; // 384·k bytes of ByteEncode12, then ρ
  if (ek.length !== KEM_LENGTHS[alg].publicKey) return false;
  for (let i = 0; i < polyBytes; i += 3) {
    const b0 = ek[i] ?? 0;
    const b1 = ek[i + 1] ?? 0;
    const b2 = ek[i + 2] ?? 0;
    if ((b0 | ((b1 & 0x0f) << 8)) >= Q_KEM || ((b1 >> 4) | (b2 << 4)) >= Q_KEM) return false;
  }
  return true;
}

/** The encapsulation key embedded in an expanded ML-KEM dk (FIPS 203 Alg. 16 layout). */
export function mlKemEmbeddedPublicKey(alg: KemAlgorithm, dk: Uint8Array): Uint8Array {
  const k = (KEM_LENGTHS[alg].publicKey - 32) / 384;
  return dk.subarray(384 * k, 768 * k + 32);
}

/** FIPS 203 §7.3 hash check: H(ek) stored in dk equals SHA3-256 of the embedded ek. */
export function mlKemHashCheck(alg: KemAlgorithm, dk: Uint8Array): boolean {
  if (dk.length !== KEM_LENGTHS[alg].secretKey) return false;
  const k = (KEM_LENGTHS[alg].publicKey - 32) / 384;
  const ek = mlKemEmbeddedPublicKey(alg, dk);
  return (
    constantTimeEqual(sha3_256(ek), dk.subarray(768 * k + 32, 768 * k + 64)) && mlKemModulusCheck(alg, ek)
  );
}

const DSA_SHAPE: Readonly<Record<SigAlgorithm, { k: number; l: number; eta: number }>> = {
  'ml-dsa-44': { k: 4, l: 4, eta: 2 },
  'ml-dsa-65': { k: 6, l: 5, eta: 4 },
  'ml-dsa-87': { k: 8, l: 7, eta: 2 },
};

/**
 * ML-DSA expanded sk against its public key (FIPS 204 Alg. 24/25 layouts): ρ equal, tr =
 * H(pk, 64), and every packed s1/s2 coefficient within [-η, η] (skDecode accepts out-of-range
 * packings; FIPS 204 §7.2 leaves rejecting them to the implementation).
 */
export function mlDsaSecretKeyCheck(alg: SigAlgorithm, sk: Uint8Array, pk: Uint8Array): boolean {
  const len = SIG_LENGTHS[alg];
  if (sk.length !== len.secretKey || pk.length !== len.publicKey) return false;
  if (!constantTimeEqual(sk.subarray(0, 32), pk.subarray(0, 32))) return false;
  if (!constantTimeEqual(sk.subarray(64, 128), shake256(pk, { dkLen: 64 }))) return false;
  const { k, l, eta } = DSA_SHAPE[alg];
  const bits = eta === 2 ? 3 : 4;
  const packed = sk.subarray(128, 128 + (k + l) * 32 * bits);
  let bad = 0;
  for (let coeff = 0; coeff < (k + l) * 256; coeff++) {
    const bitPos = coeff * bits;
    const byte = bitPos >> 3;
    const word = (packed[byte] ?? 0) | ((packed[byte + 1] ?? 0) << 8);
    const v = (word >> (bitPos & 7)) & ((1 << bits) - 1);
    bad |= v > 2 * eta ? 1 : 0;
  }
  return bad === 0;
}
