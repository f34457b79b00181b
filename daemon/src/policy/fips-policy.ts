/**
 * FIPS mode as an algorithm policy: only algorithms FIPS 140-3 / SP 800-series approve may be used.
 * This restricts which algorithms keybroker will run; it does NOT make keybroker (or Node's
 * OpenSSL, liboqs or SoftHSM2) a validated cryptographic module.
 *
 * Composite names join components with "+" (e.g. "ML-DSA-65+ECDSA-P256"): a composite is allowed
 * only when every component is approved. X-Wing is ML-KEM-768 + X25519, so it is refused.
 */
import { KbError } from '../errors.ts';

/** Approved algorithm names (normalized: lower case, "-" separators). */
export const FIPS_APPROVED: ReadonlySet<string> = new Set([
  'aes-256-gcm',
  'aes-128-gcm',
  'aes-kw',
  'aes-kwp',
  'hkdf-sha256',
  'hkdf-sha384',
  'hkdf-sha512',
  'hmac-sha256',
  'hmac-sha384',
  'hmac-sha512',
  'sha-256',
  'sha-384',
  'sha-512',
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-pss-sha256-3072',
  'ml-kem-512',
  'ml-kem-768',
  'ml-kem-1024',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
]);

/** Known algorithms that FIPS mode refuses, with why (the reason reaches the caller). */
export const FIPS_REFUSED: ReadonlyMap<string, string> = new Map([
  ['chacha20-poly1305', 'ChaCha20-Poly1305 is not FIPS-approved'],
  ['xchacha20-poly1305', 'XChaCha20-Poly1305 is not FIPS-approved'],
  ['x25519', 'X25519 is not FIPS-approved'],
  ['x448', 'X448 is not FIPS-approved'],
  ['x-wing', 'X-Wing contains X25519, which is not FIPS-approved'],
  ['ed25519', 'Ed25519 is not allowed in FIPS mode by this policy'],
  ['ed448', 'Ed448 is not allowed in FIPS mode by this policy'],
]);

const ALIASES: ReadonlyMap<string, string> = new Map([
  ['xwing', 'x-wing'],
  ['x-wing-kem', 'x-wing'],
  ['ecdsa-p-256', 'ecdsa-p256'],
  ['ecdsa-p256-sha256', 'ecdsa-p256'],
  ['es256', 'ecdsa-p256'],
  ['mlkem768', 'ml-kem-768'],
  ['mldsa65', 'ml-dsa-65'],
  ['chacha20poly1305', 'chacha20-poly1305'],
]);

/** Normalize an algorithm name for comparison: lower case, "_" and spaces become "-". */
export function normalizeAlgorithm(name: string): string {
  const n = name
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  return ALIASES.get(n) ?? n;
}

/** Why `algorithm` is refused in FIPS mode, or undefined when it is allowed. */
export function fipsRefusal(algorithm: string): string | undefined {
  const parts = algorithm.split('+').map(normalizeAlgorithm);
  if (parts.length > 4 || parts.some((p) => p === '')) return `malformed algorithm name`;
  for (const p of parts) {
    if (FIPS_APPROVED.has(p)) continue;
    const why = FIPS_REFUSED.get(p);
    // Unknown names are refused: FIPS mode is an allow-list, never a deny-list.
    return why ?? `${p.slice(0, 64)} is not on the FIPS-approved list`;
  }
  return undefined;
}

/** Throw ALGORITHM_NOT_ALLOWED when `algorithm` is refused in FIPS mode. */
export function assertFipsAlgorithm(algorithm: string): void {
  const why = fipsRefusal(algorithm);
  if (why !== undefined) throw new KbError('ALGORITHM_NOT_ALLOWED', `FIPS mode: ${why}`);
}
