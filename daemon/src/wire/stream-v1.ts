/**
 * Format v1 of streams: a header, then sealed chunks (STREAM construction of Hoang, Reyhanitabar,
 * Rogaway and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
 * CRYPTO 2015, as in Tink's AES-GCM-HKDF streaming AEAD).
 *
 * Header:
 *   0    1     format version          0x01
 *   1    1     blob type               0x03 stream header
 *   2    1     algorithm               0x02 AES-256-GCM STREAM, key = HKDF-SHA256(CEK), HKDF commitment
 *   3    1+n   org, tenant, customer   each u8 length (1..63) ‖ bytes
 *   .    4     CEK version             u32 big-endian
 *   .    4     chunk size              u32, max plaintext bytes per chunk, 1 .. MAX_CHUNK_BYTES
 *   .    32    salt
 *   .    7     nonce prefix            random per stream
 *   .    32    key commitment
 * Chunk i:  0x04 ‖ AES-256-GCM(key, nonce = prefix ‖ u32 i ‖ u8 final, aad = A) ‖ tag
 *   where A = SHA-256(u32 len ‖ header ‖ u32 len ‖ caller AAD), computed once per stream.
 * The counter stops reordering and dropping, the final flag stops truncation and extension, the
 * per-stream key and prefix stop chunks moving between streams.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { decryptionFailed, KbError } from '../errors.ts';
import { BlobType, FORMAT_V1, TAG_BYTES } from './envelope-v1.ts';
import { ascii, concat, lp32, lpName, u32, WireReader } from './wire-codec.ts';

export const ALG_STREAM_AES256GCM_HKDF = 0x02;
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** Largest chunk a header may declare (1 MiB). */
export const MAX_CHUNK_BYTES = 1024 * 1024;
const PREFIX_BYTES = 7;
const MAX_CHUNKS = 0xffff_ffff;
const STREAM_INFO = ascii('keybroker stream v1');

export interface StreamIdentity {
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly cekVersion: number;
}

export interface ParsedStreamHeader extends StreamIdentity {
  readonly chunkBytes: number;
  readonly salt: Uint8Array;
  readonly noncePrefix: Uint8Array;
  readonly commitment: Uint8Array;
  readonly kdfPrefix: Uint8Array;
  readonly header: Uint8Array;
}

function derive(
  cek: Uint8Array,
  salt: Uint8Array,
  kdfPrefix: Uint8Array,
): { key: Uint8Array; commitment: Uint8Array } {
  const okm = new Uint8Array(hkdfSync('sha256', cek, salt, concat([STREAM_INFO, kdfPrefix]), 64));
  return { key: okm.subarray(0, 32), commitment: okm.slice(32) };
}

function chunkNonce(prefix: Uint8Array, i: number, final: boolean): Uint8Array {
  return concat([prefix, u32(i), Uint8Array.of(final ? 1 : 0)]);
}

function chunkAad(header: Uint8Array, aad: Uint8Array): Uint8Array {
  return createHash('sha256').update(lp32(header)).update(lp32(aad)).digest();
}

/** Seals chunks in order. Holds the stream key until `final`, then zeroes it. */
export class StreamSealer {
  readonly header: Uint8Array;
  readonly chunkBytes: number;
  #key: Uint8Array;
  #aad: Uint8Array;
  #prefix: Uint8Array;
  #i = 0;
  #done = false;

  constructor(cek: Uint8Array, id: StreamIdentity, aad: Uint8Array, chunkBytes = DEFAULT_CHUNK_BYTES) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) {
      throw new KbError('INVALID_ARGUMENT', `chunk size must be 1..${MAX_CHUNK_BYTES}`);
    }
    const kdfPrefix = concat([
      Uint8Array.of(FORMAT_V1, BlobType.streamHeader, ALG_STREAM_AES256GCM_HKDF),
      lpName(id.org),
      lpName(id.tenant),
      lpName(id.customer),
      u32(id.cekVersion),
      u32(chunkBytes),
    ]);
    const salt = randomBytes(32);
    this.#prefix = randomBytes(PREFIX_BYTES);
    const { key, commitment } = derive(cek, salt, kdfPrefix);
    this.#key = key;
    this.header = concat([kdfPrefix, salt, this.#prefix, commitment]);
    this.#aad = chunkAad(this.header, aad);
    this.chunkBytes = chunkBytes;
  }

  seal(chunk: Uint8Array, final: boolean): Uint8Array {
    if (this.#done) throw new KbError('FAILED_PRECONDITION', 'stream already finished');
    if (chunk.length > this.chunkBytes) throw new KbError('TOO_LARGE', `chunk over ${this.chunkBytes} bytes`);
    if (this.#i >= MAX_CHUNKS) throw new KbError('TOO_LARGE', 'too many chunks');
    const c = createCipheriv('aes-256-gcm', this.#key, chunkNonce(this.#prefix, this.#i, final));
    c.setAAD(this.#aad);
    const body = c.update(chunk);
    c.final();
    this.#i++;
    if (final) {
      this.#done = true;
      this.#key.fill(0);
    }
    return concat([Uint8Array.of(BlobType.streamChunk), body, c.getAuthTag()]);
  }

  /** Zero the stream key; every later `seal` fails (a shred ended the stream). */
  abort(): void {
    this.#done = true;
    this.#key.fill(0);
  }
}

/** Parse a stream header (bounds and grammar only). Throws decryptionFailed(). */
export function parseStreamHeader(header: Uint8Array): ParsedStreamHeader {
  const r = new WireReader(header);
  if (r.u8() !== FORMAT_V1 || r.u8() !== BlobType.streamHeader || r.u8() !== ALG_STREAM_AES256GCM_HKDF) {
    throw decryptionFailed();
  }
  const org = r.name();
  const tenant = r.name();
  const customer = r.name();
  const cekVersion = r.u32();
  const chunkBytes = r.u32();
  if (cekVersion < 1 || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw decryptionFailed();
  const kdfPrefix = header.subarray(0, r.offset);
  const salt = r.bytes(32);
  const noncePrefix = r.bytes(PREFIX_BYTES);
  const commitment = r.bytes(32);
  if (r.remaining !== 0) throw decryptionFailed();
  return { org, tenant, customer, cekVersion, chunkBytes, salt, noncePrefix, commitment, kdfPrefix, header };
}

/** Opens chunks in order; `finish()` fails unless the final chunk was seen. */
export class StreamOpener {
  #key: Uint8Array;
  #aad: Uint8Array;
  #p: ParsedStreamHeader;
  #i = 0;
  #done = false;
  #failed = false;

  constructor(cek: Uint8Array, p: ParsedStreamHeader, aad: Uint8Array) {
    const { key, commitment } = derive(cek, p.salt, p.kdfPrefix);
    if (!timingSafeEqual(commitment, p.commitment)) {
      key.fill(0);
      throw decryptionFailed();
    }
    this.#key = key;
    this.#p = p;
    this.#aad = chunkAad(p.header, aad);
  }

  open(sealed: Uint8Array): { plaintext: Uint8Array; final: boolean } {
    if (this.#done || this.#failed) throw decryptionFailed();
    if (
      sealed.length < 1 + TAG_BYTES ||
      sealed.length > 1 + this.#p.chunkBytes + TAG_BYTES ||
      sealed[0] !== BlobType.streamChunk
    ) {
      return this.#fail();
    }
    const body = sealed.subarray(1, sealed.length - TAG_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    // The flag is not sent in clear: try "not final" first (every chunk but the last).
    for (const final of [false, true]) {
      const d = createDecipheriv('aes-256-gcm', this.#key, chunkNonce(this.#p.noncePrefix, this.#i, final));
      d.setAAD(this.#aad);
      d.setAuthTag(tag);
      const out = d.update(body);
      try {
        d.final();
      } catch {
        out.fill(0);
        continue;
      }
      this.#i++;
      if (final) {
        this.#done = true;
        this.#key.fill(0);
      }
      return { plaintext: new Uint8Array(out.buffer, out.byteOffset, out.length), final };
    }
    return this.#fail();
  }

  finish(): void {
    if (!this.#done) {
      this.#key.fill(0);
      throw decryptionFailed();
    }
  }

  /** Zero the stream key; every later `open` fails (a shred ended the stream). */
  abort(): void {
    this.#failed = true;
    this.#key.fill(0);
  }

  #fail(): never {
    this.#failed = true;
    this.#key.fill(0);
    throw decryptionFailed();
  }
}
