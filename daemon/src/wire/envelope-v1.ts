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
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { decryptionFailed } from '../errors.ts';
import { fillPublicRandom } from '../util/random-pool.ts';
import { ascii, MAX_NAME_BYTES, WireReader } from './wire-codec.ts';

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

/** Write `u8 len ‖ name` at `off`; names are ASCII by grammar (ids.ts), so bytes = chars. */
function putName(out: Buffer, off: number, name: string): number {
  const n = name.length;
  if (n < 1 || n > MAX_NAME_BYTES || Buffer.byteLength(name, 'utf8') !== n)
    throw new RangeError('name length out of bounds');
  out[off] = n;
  out.write(name, off + 1, 'latin1');
  return off + 1 + n;
}

/** HKDF info = "keybroker dek v1" ‖ prefix, in one allocation. */
function dekInfo(prefix: Uint8Array): Buffer {
  const info = Buffer.allocUnsafe(DEK_INFO.length + prefix.length);
  info.set(DEK_INFO, 0);
  info.set(prefix, DEK_INFO.length);
  return info;
}

/**
 * Raw key bytes as a KeyObject. Node turns raw keys into a KeyObject inside hkdfSync and
 * createCipheriv anyway, but first probes them with a thrown and caught internal error
 * (isKeyObject), which cost more CPU than the HKDF and the AES-GCM of a 1 KiB message together.
 * Same bytes, same copy into native memory (freed with the KeyObject); only the probe is gone.
 */
function secretKey(bytes: Uint8Array): KeyObject {
  return createSecretKey(bytes);
}

/** The CEK as a KeyObject, for sealing many messages under it (a copy in native memory). */
export function cekKeyObject(cek: Uint8Array): KeyObject {
  if (cek.length !== 32) throw new RangeError('CEK must be 32 bytes');
  return secretKey(cek);
}

/** DEK and key commitment for one message; the DEK is zeroed by the caller after use. */
function deriveDek(
  cek: Uint8Array | KeyObject,
  salt: Uint8Array,
  prefix: Uint8Array,
): { dek: Uint8Array; commitment: Uint8Array } {
  const ikm = cek instanceof Uint8Array ? secretKey(cek) : cek;
  const okm = new Uint8Array(hkdfSync('sha256', ikm, salt, dekInfo(prefix), 64));
  return { dek: okm.subarray(0, 32), commitment: okm.subarray(32, 64) };
}

/** lp32(header) ‖ lp32(aad), in one allocation. */
function gcmAad(header: Uint8Array, aad: Uint8Array): Buffer {
  const b = Buffer.allocUnsafeSlow(8 + header.length + aad.length);
  b.writeUInt32BE(header.length, 0);
  b.set(header, 4);
  b.writeUInt32BE(aad.length, 4 + header.length);
  b.set(aad, 8 + header.length);
  return b;
}

/**
 * Seal `plaintext` under a DEK derived from `cek`; `rand` is injectable only for golden files.
 * A batch passes one KeyObject (cekKeyObject) for all its items instead of the bytes.
 */
export function sealEnvelope(
  cek: Uint8Array | KeyObject,
  h: EnvelopeHeader,
  plaintext: Uint8Array,
  aad: Uint8Array,
  rand?: (n: number) => Uint8Array,
): Uint8Array {
  const prefixLen = 3 + 3 + h.org.length + h.tenant.length + h.customer.length + 4;
  const headerLen = prefixLen + SALT_BYTES + NONCE_BYTES + COMMIT_BYTES;
  // Not from Buffer's shared pool: the caller gets this ArrayBuffer, and a pooled slab would also
  // hold other requests' bytes (every byte of `out` is written below).
  const out = Buffer.allocUnsafeSlow(headerLen + plaintext.length + TAG_BYTES);
  out[0] = FORMAT_V1;
  out[1] = h.type;
  out[2] = ALG_AES256GCM_HKDF_COMMIT;
  let o = putName(out, 3, h.org);
  o = putName(out, o, h.tenant);
  o = putName(out, o, h.customer);
  out.writeUInt32BE(h.cekVersion >>> 0, o);
  if (o + 4 !== prefixLen) throw new RangeError('header length mismatch');
  if (rand) {
    out.set(rand(SALT_BYTES), prefixLen);
    out.set(rand(NONCE_BYTES), prefixLen + SALT_BYTES);
  } else {
    fillPublicRandom(out, prefixLen, SALT_BYTES + NONCE_BYTES);
  }
  const prefix = out.subarray(0, prefixLen);
  const salt = out.subarray(prefixLen, prefixLen + SALT_BYTES);
  const nonce = out.subarray(prefixLen + SALT_BYTES, prefixLen + SALT_BYTES + NONCE_BYTES);
  const { dek, commitment } = deriveDek(cek, salt, prefix);
  try {
    out.set(commitment, prefixLen + SALT_BYTES + NONCE_BYTES);
    const header = out.subarray(0, headerLen);
    const c = createCipheriv('aes-256-gcm', secretKey(dek), nonce);
    c.setAAD(gcmAad(header, aad));
    out.set(c.update(plaintext), headerLen);
    c.final();
    out.set(c.getAuthTag(), headerLen + plaintext.length);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
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
    const d = createDecipheriv('aes-256-gcm', secretKey(dek), p.nonce);
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
