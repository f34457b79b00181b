/**
 * Format v1 of ciphertexts and wrapped data keys (see FORMAT.md): one layout, two type bytes.
 *
 *   off  size  field
 *   0    1     format version          0x01
 *   1    1     blob type               0x01 ciphertext | 0x02 wrapped data key
 *   2    1     algorithm               0x01 AES-256-GCM, DEK = HKDF-SHA256(CEK), HKDF key commitment
 *   3    1+n   org                     u8 length (1..63) ‖ bytes
 *   .    1+n   tenant                  u8 length (1..63) ‖ bytes
 *   .    1+n   customer                u8 length (1..63) ‖ bytes
 *   .    4     CEK version             u32 big-endian, >= 1
 *   .    32    salt                    fresh random per message
 *   .    12    nonce                   fresh random per message
 *   .    32    key commitment          HKDF output next to the DEK, compared in constant time
 *   .    n     ciphertext              AES-256-GCM
 *   end  16    tag
 *
 * DEK ‖ commitment = HKDF-SHA256(ikm = CEK, salt, info = "keybroker dek v1" ‖ header[0 .. salt)), L = 64.
 * GCM AAD = u32 len ‖ header[0 .. commitment end] ‖ u32 len ‖ caller AAD.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { decryptionFailed } from '../errors.ts';
import { ascii, concat, lp32, lpName, u32, WireReader } from './wire-codec.ts';

export const FORMAT_V1 = 0x01;
export const BlobType = {
  ciphertext: 0x01,
  wrappedDataKey: 0x02,
  streamHeader: 0x03,
  streamChunk: 0x04,
} as const;
export type EnvelopeType = typeof BlobType.ciphertext | typeof BlobType.wrappedDataKey;
export const ALG_AES256GCM_HKDF_COMMIT = 0x01;

export const SALT_BYTES = 32;
export const NONCE_BYTES = 12;
export const COMMIT_BYTES = 32;
export const TAG_BYTES = 16;
/** Largest plaintext one envelope carries (the gRPC layer's message limit is below this). */
export const MAX_PLAINTEXT_BYTES = 4 * 1024 * 1024;
/** Largest caller AAD (encryption context). */
export const MAX_AAD_BYTES = 64 * 1024;

const DEK_INFO = ascii('keybroker dek v1');

/** Identity named by a header; the caller checks it against the authenticated TenantRef. */
export interface EnvelopeHeader {
  readonly type: EnvelopeType;
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly cekVersion: number;
}

interface ParsedEnvelope extends EnvelopeHeader {
  readonly salt: Uint8Array;
  readonly nonce: Uint8Array;
  readonly commitment: Uint8Array;
  /** Header bytes up to (excluding) the salt: the HKDF info suffix. */
  readonly prefix: Uint8Array;
  /** Header bytes up to and including the commitment: authenticated with the caller's AAD. */
  readonly header: Uint8Array;
  readonly body: Uint8Array;
  readonly tag: Uint8Array;
}

function prefixOf(h: EnvelopeHeader): Uint8Array {
  return concat([
    Uint8Array.of(FORMAT_V1, h.type, ALG_AES256GCM_HKDF_COMMIT),
    lpName(h.org),
    lpName(h.tenant),
    lpName(h.customer),
    u32(h.cekVersion),
  ]);
}

/** DEK and key commitment for one message; the DEK is zeroed by the caller after use. */
function deriveDek(
  cek: Uint8Array,
  salt: Uint8Array,
  prefix: Uint8Array,
): { dek: Uint8Array; commitment: Uint8Array } {
  const okm = new Uint8Array(hkdfSync('sha256', cek, salt, concat([DEK_INFO, prefix]), 64));
  return { dek: okm.subarray(0, 32), commitment: okm.slice(32, 64) };
}

function gcmAad(header: Uint8Array, aad: Uint8Array): Uint8Array {
  return concat([lp32(header), lp32(aad)]);
}

/** Seal `plaintext` under a DEK derived from `cek`; `rand` is injectable only for golden files. */
export function sealEnvelope(
  cek: Uint8Array,
  h: EnvelopeHeader,
  plaintext: Uint8Array,
  aad: Uint8Array,
  rand: (n: number) => Uint8Array = (n) => randomBytes(n),
): Uint8Array {
  const prefix = prefixOf(h);
  const salt = rand(SALT_BYTES);
  const nonce = rand(NONCE_BYTES);
  const { dek, commitment } = deriveDek(cek, salt, prefix);
  try {
    const header = concat([prefix, salt, nonce, commitment]);
    const c = createCipheriv('aes-256-gcm', dek, nonce);
    c.setAAD(gcmAad(header, aad));
    const body = c.update(plaintext);
    c.final();
    return concat([header, body, c.getAuthTag()]);
  } finally {
    dek.fill(0);
  }
}

/** Parse a header without any key: bounds and grammar only. Throws decryptionFailed(). */
export function parseEnvelope(blob: Uint8Array): ParsedEnvelope {
  const r = new WireReader(blob);
  if (r.u8() !== FORMAT_V1) throw decryptionFailed();
  const type = r.u8();
  if (type !== BlobType.ciphertext && type !== BlobType.wrappedDataKey) throw decryptionFailed();
  if (r.u8() !== ALG_AES256GCM_HKDF_COMMIT) throw decryptionFailed();
  const org = r.name();
  const tenant = r.name();
  const customer = r.name();
  const cekVersion = r.u32();
  if (cekVersion < 1) throw decryptionFailed();
  const prefixEnd = r.offset;
  const salt = r.bytes(SALT_BYTES);
  const nonce = r.bytes(NONCE_BYTES);
  const commitment = r.bytes(COMMIT_BYTES);
  const headerEnd = r.offset;
  if (r.remaining < TAG_BYTES || r.remaining - TAG_BYTES > MAX_PLAINTEXT_BYTES) throw decryptionFailed();
  const body = r.bytes(r.remaining - TAG_BYTES);
  const tag = r.bytes(TAG_BYTES);
  return {
    type,
    org,
    tenant,
    customer,
    cekVersion,
    salt,
    nonce,
    commitment,
    prefix: blob.subarray(0, prefixEnd),
    header: blob.subarray(0, headerEnd),
    body,
    tag,
  };
}

/**
 * Open a parsed envelope with `cek`. The commitment is checked first, in constant time, so a
 * blob crafted to open under two keys (invisible salamanders, partitioning oracles) opens under none.
 */
export function openEnvelope(cek: Uint8Array, p: ParsedEnvelope, aad: Uint8Array): Uint8Array {
  const { dek, commitment } = deriveDek(cek, p.salt, p.prefix);
  try {
    if (!timingSafeEqual(commitment, p.commitment)) throw decryptionFailed();
    const d = createDecipheriv('aes-256-gcm', dek, p.nonce);
    d.setAAD(gcmAad(p.header, aad));
    d.setAuthTag(p.tag);
    const out = d.update(p.body);
    try {
      d.final();
    } catch (err) {
      out.fill(0);
      throw decryptionFailed(err);
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } finally {
    dek.fill(0);
  }
}
