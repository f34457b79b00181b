/**
 * Public-key export as raw bytes, SubjectPublicKeyInfo (DER and PEM) and JWK, plus a JWKS builder.
 *
 * - ML-KEM / ML-DSA: SPKI per RFC 9881 / RFC 9935 (NIST OIDs, no parameters); JWK `kty: "AKP"`
 *   with `alg` and `pub` (RFC 9964 for ML-DSA; ML-KEM the same way, as Node exports it).
 * - Ed25519: RFC 8410 SPKI; JWK `kty: "OKP"` (RFC 8037). ECDSA P-256: RFC 5480 SPKI; JWK `kty: "EC"`.
 * - Composite ML-DSA-65+ECDSA-P256: SPKI with OID 1.3.6.1.5.5.7.6.45 and the raw concatenated key
 *   in the BIT STRING (draft-ietf-lamps-pq-composite-sigs-19); JWK `kty: "AKP"`,
 *   `alg: "ML-DSA-65-ES256"`, `pub` = the same raw key (draft-prabel-jose-pq-composite-sigs).
 * - X-Wing: SPKI with id-XWing 1.3.6.1.4.1.62253.25722 (draft-connolly-cfrg-xwing-kem) and the
 *   raw 1216-byte key; JWK — our choice, as no JOSE draft is final — `kty: "AKP"`,
 *   `alg: "X-Wing"`, `pub` = raw key, following the AKP pattern.
 * `kid` defaults to the RFC 7638 thumbprint (for AKP: members alg, kty, pub).
 */
import { createHash } from 'node:crypto';
import { KbError } from '../errors.ts';
import { COMPOSITE_LENGTHS, COMPOSITE_OID } from './composite-mldsa65-ecdsa-p256.ts';
import { assertBytes, assertOneOf } from './pqc-assert.ts';
import { TAG, oid, spki, tlv } from './pqc-der.ts';
import {
  JOSE_ALG,
  KEM_LENGTHS,
  PQC_OIDS,
  SIG_LENGTHS,
  isKemAlgorithm,
  isSigAlgorithm,
  type PqcAlgorithm,
} from './pqc-params.ts';

export const PUBLIC_KEY_KINDS = [
  'ml-kem-512',
  'ml-kem-768',
  'ml-kem-1024',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
  'x-wing',
  'composite-mldsa65-ecdsa-p256',
  'ed25519',
  'ecdsa-p256',
] as const;
export type PublicKeyKind = (typeof PUBLIC_KEY_KINDS)[number];

const XWING_OID = '1.3.6.1.4.1.62253.25722';
const ED25519_OID = '1.3.101.112';
const EC_PUBLIC_KEY_OID = '1.2.840.10045.2.1';
const P256_OID = '1.2.840.10045.3.1.7';

export interface Jwk {
  readonly kty: 'AKP' | 'OKP' | 'EC';
  readonly alg?: string;
  readonly pub?: string;
  readonly crv?: string;
  readonly x?: string;
  readonly y?: string;
  readonly kid?: string;
  readonly use?: 'sig' | 'enc';
  readonly key_ops?: readonly string[];
}

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

function rawLength(kind: PublicKeyKind): number {
  if (isKemAlgorithm(kind)) return KEM_LENGTHS[kind].publicKey;
  if (isSigAlgorithm(kind)) return SIG_LENGTHS[kind].publicKey;
  switch (kind) {
    case 'x-wing':
      return 1216;
    case 'composite-mldsa65-ecdsa-p256':
      return COMPOSITE_LENGTHS.publicKey;
    case 'ed25519':
      return 32;
    case 'ecdsa-p256':
      return 65;
  }
  throw new KbError('INVALID_ARGUMENT', 'unknown key kind');
}

function checked(kind: PublicKeyKind, publicKey: Uint8Array): Uint8Array {
  assertOneOf('kind', kind, PUBLIC_KEY_KINDS);
  const pk = assertBytes('publicKey', publicKey, rawLength(kind));
  if (kind === 'ecdsa-p256' && pk[0] !== 0x04)
    throw new KbError('INVALID_ARGUMENT', 'publicKey must be an uncompressed point');
  return pk;
}

/** SubjectPublicKeyInfo DER. */
export function publicKeyToSpki(kind: PublicKeyKind, publicKey: Uint8Array): Uint8Array {
  const pk = checked(kind, publicKey);
  if (isKemAlgorithm(kind) || isSigAlgorithm(kind)) return spki(PQC_OIDS[kind as PqcAlgorithm], pk);
  switch (kind) {
    case 'x-wing':
      return spki(XWING_OID, pk);
    case 'composite-mldsa65-ecdsa-p256':
      return spki(COMPOSITE_OID, pk);
    case 'ed25519':
      return spki(ED25519_OID, pk);
    case 'ecdsa-p256':
      return tlv(
        TAG.SEQUENCE,
        tlv(TAG.SEQUENCE, oid(EC_PUBLIC_KEY_OID), oid(P256_OID)),
        tlv(TAG.BIT_STRING, Uint8Array.of(0), pk),
      );
  }
  throw new KbError('INVALID_ARGUMENT', 'unknown key kind');
}

/** SubjectPublicKeyInfo PEM ("PUBLIC KEY", RFC 7468). */
export function publicKeyToPem(kind: PublicKeyKind, publicKey: Uint8Array): string {
  const b64 = Buffer.from(publicKeyToSpki(kind, publicKey)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

/** JWK (public members only). */
export function publicKeyToJwk(kind: PublicKeyKind, publicKey: Uint8Array): Jwk {
  const pk = checked(kind, publicKey);
  if (isKemAlgorithm(kind) || isSigAlgorithm(kind))
    return { kty: 'AKP', alg: JOSE_ALG[kind as PqcAlgorithm], pub: b64url(pk) };
  switch (kind) {
    case 'x-wing':
      return { kty: 'AKP', alg: 'X-Wing', pub: b64url(pk) };
    case 'composite-mldsa65-ecdsa-p256':
      return { kty: 'AKP', alg: 'ML-DSA-65-ES256', pub: b64url(pk) };
    case 'ed25519':
      return { kty: 'OKP', crv: 'Ed25519', x: b64url(pk) };
    case 'ecdsa-p256':
      return { kty: 'EC', crv: 'P-256', x: b64url(pk.subarray(1, 33)), y: b64url(pk.subarray(33, 65)) };
  }
  throw new KbError('INVALID_ARGUMENT', 'unknown key kind');
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members in lexicographic order. */
export function jwkThumbprint(jwk: Jwk): string {
  const members =
    jwk.kty === 'AKP'
      ? { alg: jwk.alg, kty: jwk.kty, pub: jwk.pub }
      : jwk.kty === 'OKP'
        ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
        : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

export interface JwksEntry {
  readonly kind: PublicKeyKind;
  readonly publicKey: Uint8Array;
  /** Defaults to the RFC 7638 thumbprint. */
  readonly kid?: string;
}

/** A JWKS (RFC 7517 §5). Signature keys get `use: "sig"`, KEM keys `use: "enc"`. */
export function buildJwks(entries: readonly JwksEntry[]): { keys: Jwk[] } {
  return {
    keys: entries.map((e) => {
      const jwk = publicKeyToJwk(e.kind, e.publicKey);
      const enc = isKemAlgorithm(e.kind) || e.kind === 'x-wing';
      return { ...jwk, kid: e.kid ?? jwkThumbprint(jwk), use: enc ? 'enc' : 'sig' };
    }),
  };
}
