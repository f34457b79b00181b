/**
 * encryptRecord / decryptRecord: records are encrypted here with AES-256-GCM under data keys from
 * GenerateDataKey, so the broker sees one call per data key, not one per record. Data keys are
 * cached within limits (see data-key-cache.ts); decryption caches unwrapped keys by their wrapped
 * bytes with the same limits. The record format is in envelope-format.ts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { DataKeyCache } from './data-key-cache.ts';
import type { DataKeyCacheLimits } from './data-key-cache.ts';
import { EnvelopeError, NONCE_BYTES, TAG_BYTES, decodeRecord, encodeHeader } from './envelope-format.ts';
import type { GenerateDataKeyResponse } from './generated/keybroker-v1.ts';
import type { KeybrokerClient } from './keybroker-client.ts';

export interface EncryptRecordOptions {
  /** Customer whose key wraps the data key (default: the tenant's default customer). */
  readonly customer?: string;
  /** Bound to the data key and stored in the record; records with different contexts never share a key. */
  readonly keyContext?: Uint8Array;
  /** Bound to this record only (e.g. its row id); not stored: decryptRecord must be given the same. */
  readonly aad?: Uint8Array;
}

export interface DecryptRecordOptions {
  readonly aad?: Uint8Array;
}

export interface EnvelopeStats {
  /** GenerateDataKey calls made. */
  generated: number;
  /** DecryptDataKey calls made. */
  unwrapped: number;
  encryptHits: number;
  decryptHits: number;
}

const EMPTY = Buffer.alloc(0);

export class EnvelopeEncryptor {
  readonly stats: EnvelopeStats = { generated: 0, unwrapped: 0, encryptHits: 0, decryptHits: 0 };
  readonly #client: KeybrokerClient;
  readonly #enc: DataKeyCache;
  readonly #dec: DataKeyCache;
  readonly #inflight = new Map<string, Promise<GenerateDataKeyResponse>>();
  readonly #unwrapping = new Map<string, Promise<Buffer>>();

  constructor(client: KeybrokerClient, limits: DataKeyCacheLimits = {}, now?: () => number) {
    this.#client = client;
    this.#enc = new DataKeyCache(limits, now);
    this.#dec = new DataKeyCache(limits, now);
  }

  async encryptRecord(plaintext: Uint8Array, o: EncryptRecordOptions = {}): Promise<Buffer> {
    const keyContext = Buffer.from(o.keyContext ?? EMPTY);
    const customer = o.customer ?? '';
    const id = `${customer}\0${keyContext.toString('base64')}`;
    for (;;) {
      const hit = this.#enc.take(id, plaintext.length);
      if (hit !== undefined) {
        this.stats.encryptHits++;
        return seal(hit.key, hit.wrappedKey, keyContext, plaintext, o.aad);
      }
      const pending = this.#inflight.get(id);
      if (pending !== undefined) {
        // Another record is fetching this context's key: wait, then take it from the cache.
        await pending.catch(() => undefined);
        continue;
      }
      const fetch = this.#client.crypto.generateDataKey({ customer, aad: keyContext, length: 32 });
      this.#inflight.set(id, fetch);
      let dk: GenerateDataKeyResponse;
      try {
        dk = await fetch;
      } finally {
        this.#inflight.delete(id);
      }
      this.stats.generated++;
      try {
        const record = seal(dk.plaintextKey, dk.wrappedKey, keyContext, plaintext, o.aad);
        this.#enc.put(id, dk.plaintextKey, dk.wrappedKey, plaintext.length);
        return record;
      } finally {
        dk.plaintextKey.fill(0);
      }
    }
  }

  /** Decrypt a record of encryptRecord; every failure of the record itself is one EnvelopeError. */
  async decryptRecord(record: Uint8Array, o: DecryptRecordOptions = {}): Promise<Buffer> {
    const { header, headerBytes, sealed } = decodeRecord(record);
    const id = `${header.keyContext.toString('base64')}\0${header.wrappedKey.toString('base64')}`;
    const plainBytes = sealed.length - TAG_BYTES;
    for (;;) {
      const hit = this.#dec.take(id, plainBytes);
      if (hit !== undefined) {
        this.stats.decryptHits++;
        return open(hit.key, header.nonce, headerBytes, sealed, o.aad);
      }
      const pending = this.#unwrapping.get(id);
      if (pending === undefined) break;
      // Another record of this data key is being unwrapped: wait, then take it from the cache.
      await pending.catch(() => undefined);
    }
    const unwrap = this.#unwrap(header.wrappedKey, header.keyContext);
    this.#unwrapping.set(id, unwrap);
    let key: Buffer;
    try {
      key = await unwrap;
    } finally {
      this.#unwrapping.delete(id);
    }
    try {
      const plaintext = open(key, header.nonce, headerBytes, sealed, o.aad);
      // Only a key that opened a record is cached.
      this.#dec.put(id, key, header.wrappedKey, plainBytes);
      return plaintext;
    } finally {
      key.fill(0);
    }
  }

  async #unwrap(wrappedKey: Buffer, keyContext: Buffer): Promise<Buffer> {
    try {
      const r = await this.#client.crypto.decryptDataKey({ wrappedKey, aad: keyContext });
      this.stats.unwrapped++;
      return r.plaintextKey;
    } catch (err) {
      // A wrapped key or context that was changed is the record's fault, said the same way as a bad tag.
      const code = (err as ServiceError).code;
      if (code === status.INVALID_ARGUMENT || code === status.NOT_FOUND) throw new EnvelopeError();
      throw err;
    }
  }

  /** Drop every cached key. */
  clear(): void {
    this.#enc.clear();
    this.#dec.clear();
  }
}

function seal(
  key: Buffer | KeyObject,
  wrappedKey: Buffer,
  keyContext: Buffer,
  plaintext: Uint8Array,
  aad?: Uint8Array,
): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const header = encodeHeader({ keyContext, wrappedKey, nonce });
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.concat([header, aad ?? EMPTY]));
  return Buffer.concat([header, c.update(plaintext), c.final(), c.getAuthTag()]);
}

function open(
  key: Buffer | KeyObject,
  nonce: Buffer,
  headerBytes: Buffer,
  sealed: Buffer,
  aad?: Uint8Array,
): Buffer {
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    d.setAAD(Buffer.concat([headerBytes, aad ?? EMPTY]));
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new EnvelopeError();
  }
}
