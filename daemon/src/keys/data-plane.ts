/**
 * Encrypt, decrypt, data keys, rewrap and streams over the hierarchy. A warm call touches only
 * in-memory caches (metadata and unwrapped CEKs): no SQLite, no HSM.
 *
 * Decrypt order: parse (bounds only) -> header names the caller's org/tenant -> CEK -> commitment
 * + AEAD. Every failure up to there is the one decryptionFailed(); policy (disabled customer or
 * version, version below the minimum) is checked only after authentication, so tampering cannot
 * produce a different error.
 */
import { randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { decryptionFailed, KbError, toKbError } from '../errors.ts';
import { customerId, DEFAULT_CUSTOMER } from '../ids.ts';
import type { CustomerId, KeyVersion, TenantRef } from '../ids.ts';
import type { TenantRow } from '../store/registry-store.ts';
import type { CustomerRow } from '../store/tenant-store.ts';
import type { EnvelopeType } from '../wire/envelope-v1.ts';
import {
  BlobType,
  cekKeyObject,
  MAX_AAD_BYTES,
  MAX_PLAINTEXT_BYTES,
  openEnvelope,
  parseEnvelope,
  sealEnvelope,
} from '../wire/envelope-v1.ts';
import { parseStreamHeader, StreamOpener, StreamSealer } from '../wire/stream-v1.ts';
import type { Hierarchy } from './hierarchy.ts';
import { tenantKey } from './hierarchy.ts';
import type {
  CustomerGuard,
  DataKeyResult,
  DecryptRequest,
  DecryptResult,
  EncryptRequest,
  EncryptResult,
  ItemResult,
  StreamDecryptor,
  StreamEncryptor,
} from './key-broker-api.ts';
import { LiveStreams } from './live-streams.ts';
import type { UsageCounter } from './usage-counter.ts';

/** Envelope of a ciphertext or a wrapped data key bigger than this is refused before parsing. */
const MAX_BLOB_BYTES = MAX_PLAINTEXT_BYTES + 512;

export class DataPlane {
  readonly #h: Hierarchy;
  readonly #usage: UsageCounter;
  readonly #rotateForUsage: (t: TenantRow, customer: string, fromVersion: number) => Promise<void>;
  readonly #streams: LiveStreams;

  constructor(
    h: Hierarchy,
    usage: UsageCounter,
    rotateForUsage: (t: TenantRow, customer: string, fromVersion: number) => Promise<void>,
    streams: LiveStreams = new LiveStreams(),
  ) {
    this.#h = h;
    this.#streams = streams;
    this.#usage = usage;
    this.#rotateForUsage = rotateForUsage;
  }

  /** The active, enabled tenant of an enabled org. */
  tenant(ref: TenantRef): TenantRow {
    const o = this.#h.orgRow(ref.org);
    if (!o) throw new KbError('NOT_FOUND', 'tenant');
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    // A destroy is recorded (and may have destroyed some keys): the tenant is already gone.
    if (this.#h.shredPending(ref.org, ref.tenant)) throw new KbError('NOT_FOUND', 'tenant');
    if (!o.enabled || !t.enabled) throw new KbError('DISABLED', 'tenant');
    return t;
  }

  #customer(t: TenantRow, customer: string): CustomerRow {
    const c = this.#h.customerRow(t, customer);
    if (!c || c.state !== 'active' || this.#h.shredPending(t.org, t.tenant, customer))
      throw new KbError('NOT_FOUND', 'customer');
    if (!c.enabled) throw new KbError('DISABLED', 'customer');
    return c;
  }

  /** The primary CEK for one encryption, rotating first when the usage limit is reached. */
  async #primary(
    ref: TenantRef,
    customer: string,
  ): Promise<{ t: TenantRow; version: number; cek: Uint8Array }> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const t = this.tenant(ref);
      const c = this.#customer(t, customer);
      if (c.primaryCek < c.minEnc) throw new KbError('VERSION_BELOW_MINIMUM');
      if (c.usageLimit > 0 && this.#usage.total(t, customer, c.primaryCek) >= c.usageLimit) {
        await this.#rotateForUsage(t, customer, c.primaryCek);
        continue;
      }
      // A copy: the cached buffer may be zeroed by an eviction once we yield.
      return { t, version: c.primaryCek, cek: await this.#h.cekCopy(t, customer, c.primaryCek) };
    }
    throw new KbError('INTERNAL', undefined, { detail: 'primary CEK kept changing' });
  }

  /** #primary as a KeyObject; a warm CEK without a usage limit is taken without yielding. */
  async #primaryKey(
    ref: TenantRef,
    customer: string,
  ): Promise<{ t: TenantRow; version: number; key: KeyObject }> {
    const t = this.tenant(ref);
    const c = this.#customer(t, customer);
    const hit = c.usageLimit === 0 ? this.#h.peekCek(t, customer, c.primaryCek) : undefined;
    if (hit && c.primaryCek >= c.minEnc) return { t, version: c.primaryCek, key: cekKeyObject(hit.expose()) };
    const p = await this.#primary(ref, customer);
    try {
      return { t: p.t, version: p.version, key: cekKeyObject(p.cek) };
    } finally {
      p.cek.fill(0);
    }
  }

  /** A tenant destroyed while this request ran must not get a result. */
  #stillThere(ref: TenantRef, customer: string): void {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    const c = this.#h.customerRow(t, customer);
    if (!c || c.state !== 'active' || this.#h.shredPending(ref.org, ref.tenant, customer))
      throw new KbError('NOT_FOUND', 'customer');
  }

  async seal(
    ref: TenantRef,
    type: EnvelopeType,
    customerIn: CustomerId | undefined,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ) {
    const customer = customerIn === undefined ? DEFAULT_CUSTOMER : customerId(customerIn);
    checkSealInput(plaintext, aad);
    const { t, version, key } = await this.#primaryKey(ref, customer);
    const header = { type, org: t.org, tenant: t.tenant, customer, cekVersion: version };
    const blob = sealEnvelope(key, header, plaintext, aad);
    this.#usage.add(t, customer, version);
    this.#stillThere(ref, customer);
    return { blob, version: version as KeyVersion };
  }

  /**
   * EncryptBatch. The items of one customer share one CEK lookup, one CEK KeyObject and one
   * usage-count update, and a warm CEK is used without yielding (no eviction can zero it
   * meanwhile): per item that leaves the HKDF and the AES-GCM, as in-process. A customer with a
   * usage limit goes item by item, since the limit can fall inside the batch. Errors as
   * BatchRunner's: a user error belongs to its item (or its customer's items), any other aborts.
   */
  async encryptBatch(ref: TenantRef, items: readonly EncryptRequest[]): Promise<ItemResult<EncryptResult>[]> {
    const out = new Array<ItemResult<EncryptResult>>(items.length);
    const byCustomer = new Map<string, number[]>();
    items.forEach((it, i) => {
      try {
        const c = it.customer === undefined ? DEFAULT_CUSTOMER : customerId(it.customer);
        const idx = byCustomer.get(c);
        if (idx) idx.push(i);
        else byCustomer.set(c, [i]);
      } catch (err) {
        out[i] = itemError(err);
      }
    });
    for (const [customer, idx] of byCustomer) {
      try {
        await this.#sealGroup(ref, customer, items, idx, out);
      } catch (err) {
        // As cleanly(): a tenant destroyed meanwhile is a clean NOT_FOUND for its items.
        let cause = err;
        try {
          this.throwIfGone(ref);
        } catch (gone) {
          cause = gone;
        }
        const e = itemError(cause);
        for (const i of idx) out[i] = e;
      }
    }
    return out;
  }

  async #sealGroup(
    ref: TenantRef,
    customer: string,
    items: readonly EncryptRequest[],
    idx: readonly number[],
    out: ItemResult<EncryptResult>[],
  ): Promise<void> {
    const c = this.#customer(this.tenant(ref), customer);
    if (c.usageLimit > 0) {
      for (const i of idx) {
        const it = items[i] as EncryptRequest;
        try {
          out[i] = {
            ok: true,
            value: await this.cleanly(ref, () => this.encrypt(ref, it.customer, it.plaintext, it.aad)),
          };
        } catch (err) {
          out[i] = itemError(err);
        }
      }
      return;
    }
    // A limit set while a cold CEK loads applies from the next batch on (as a rotation does).
    const { t, version, key } = await this.#primaryKey(ref, customer);
    const header = { type: BlobType.ciphertext, org: t.org, tenant: t.tenant, customer, cekVersion: version };
    let sealed = 0;
    for (const i of idx) {
      const it = items[i] as EncryptRequest;
      try {
        checkSealInput(it.plaintext, it.aad);
        const ciphertext = sealEnvelope(key, header, it.plaintext, it.aad);
        out[i] = { ok: true, value: { ciphertext, keyVersion: version as KeyVersion } };
        sealed += 1;
      } catch (err) {
        out[i] = itemError(err);
      }
    }
    if (sealed > 0) this.#usage.add(t, customer, version, sealed);
    this.#stillThere(ref, customer);
  }

  async encrypt(
    ref: TenantRef,
    customer: CustomerId | undefined,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<EncryptResult> {
    const { blob, version } = await this.seal(ref, BlobType.ciphertext, customer, plaintext, aad);
    return { ciphertext: blob, keyVersion: version };
  }

  /** Run a request; if its tenant was destroyed meanwhile, whatever failed becomes a clean NOT_FOUND. */
  async cleanly<T>(ref: TenantRef, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.throwIfGone(ref);
      throw err;
    }
  }

  /** NOT_FOUND if the tenant exists only as a tombstone (destroyed while a request ran). */
  throwIfGone(ref: TenantRef): void {
    const t = this.#h.tenantRow(ref.org, ref.tenant);
    if (t && t.state !== 'active') throw new KbError('NOT_FOUND', 'tenant');
  }

  /**
   * Authenticate and open an envelope of `types`; policy checks only after authentication. The
   * caller's `guard` sees the header's customer before any key is loaded.
   */
  async open(
    ref: TenantRef,
    types: readonly EnvelopeType[],
    blob: Uint8Array,
    aad: Uint8Array,
    guard?: CustomerGuard,
  ) {
    checkAad(aad);
    if (!(blob instanceof Uint8Array) || blob.length > MAX_BLOB_BYTES) throw decryptionFailed();
    const t = this.tenant(ref);
    const p = parseEnvelope(blob);
    if (!types.includes(p.type) || p.org !== ref.org || p.tenant !== ref.tenant) throw decryptionFailed();
    if (guard !== undefined && !guard(p.customer as CustomerId)) throw decryptionFailed();
    const c = this.#h.customerRow(t, p.customer);
    if (!c || c.state !== 'active' || this.#h.shredPending(t.org, t.tenant, p.customer))
      throw decryptionFailed();
    let plaintext: Uint8Array;
    // A cache hit is used synchronously (no eviction can zero it meanwhile); a miss gets a
    // private copy, which also holds when the cache thrashes.
    const hit = this.#h.peekCek(t, p.customer, p.cekVersion);
    if (hit) {
      plaintext = openEnvelope(hit.expose(), p, aad);
    } else {
      let cek: Uint8Array;
      try {
        cek = await this.#h.cekCopy(t, p.customer, p.cekVersion);
      } catch (err) {
        throw passUnavailable(err);
      }
      try {
        plaintext = openEnvelope(cek, p, aad);
      } finally {
        cek.fill(0);
      }
    }
    try {
      if (!c.enabled) throw new KbError('DISABLED', 'customer');
      if (this.#h.disabledCeks(t, p.customer).has(p.cekVersion)) throw new KbError('DISABLED', 'key version');
      if (p.cekVersion < c.minDec) throw new KbError('VERSION_BELOW_MINIMUM');
      this.#stillThere(ref, p.customer);
    } catch (err) {
      plaintext.fill(0);
      throw err;
    }
    return {
      plaintext,
      type: p.type,
      customer: p.customer as CustomerId,
      version: p.cekVersion as KeyVersion,
    };
  }

  async decrypt(ref: TenantRef, req: DecryptRequest, guard?: CustomerGuard): Promise<DecryptResult> {
    const r = await this.open(ref, [BlobType.ciphertext], req.ciphertext, req.aad, guard);
    return { plaintext: r.plaintext, customer: r.customer, keyVersion: r.version };
  }

  async generateDataKey(
    ref: TenantRef,
    customer: CustomerId | undefined,
    aad: Uint8Array,
    length = 32,
  ): Promise<DataKeyResult> {
    if (length !== 16 && length !== 32) throw new KbError('INVALID_ARGUMENT', 'length must be 16 or 32');
    const key = randomBytes(length);
    const { blob, version } = await this.seal(ref, BlobType.wrappedDataKey, customer, key, aad);
    return {
      plaintextKey: new Uint8Array(key.buffer, key.byteOffset, key.length),
      wrappedKey: blob,
      keyVersion: version,
    };
  }

  async decryptDataKey(
    ref: TenantRef,
    wrappedKey: Uint8Array,
    aad: Uint8Array,
    guard?: CustomerGuard,
  ): Promise<{ plaintextKey: Uint8Array; customer: CustomerId; keyVersion: KeyVersion }> {
    const r = await this.open(ref, [BlobType.wrappedDataKey], wrappedKey, aad, guard);
    return { plaintextKey: r.plaintext, customer: r.customer, keyVersion: r.version };
  }

  /** Open and reseal under the primary version; the plaintext never leaves this function. */
  async rewrap(
    ref: TenantRef,
    req: DecryptRequest,
    guard?: CustomerGuard,
  ): Promise<{ ciphertext: Uint8Array; keyVersion: KeyVersion; customer: CustomerId }> {
    const types = [BlobType.ciphertext, BlobType.wrappedDataKey];
    const r = await this.open(ref, types, req.ciphertext, req.aad, guard);
    try {
      const { blob, version } = await this.seal(ref, r.type, r.customer, r.plaintext, req.aad);
      return { ciphertext: blob, keyVersion: version, customer: r.customer };
    } finally {
      r.plaintext.fill(0);
    }
  }

  async encryptStream(
    ref: TenantRef,
    customerIn: CustomerId | undefined,
    aad: Uint8Array,
  ): Promise<StreamEncryptor> {
    const customer = customerIn === undefined ? DEFAULT_CUSTOMER : customerId(customerIn);
    checkAad(aad);
    const { t, version, cek } = await this.#primary(ref, customer);
    let sealer;
    try {
      sealer = new StreamSealer(cek, { org: t.org, tenant: t.tenant, customer, cekVersion: version }, aad);
    } finally {
      cek.fill(0);
    }
    this.#usage.add(t, customer, version);
    try {
      this.#stillThere(ref, customer);
    } catch (err) {
      sealer.abort();
      throw err;
    }
    const live = this.#streams.track(tenantKey(t.org, t.tenant), customer, () => sealer.abort());
    return {
      header: sealer.header,
      keyVersion: version as KeyVersion,
      seal: (chunk, final) => live.run(() => sealer.seal(chunk, final), final),
    };
  }

  async decryptStream(
    ref: TenantRef,
    header: Uint8Array,
    aad: Uint8Array,
    guard?: CustomerGuard,
  ): Promise<StreamDecryptor> {
    checkAad(aad);
    const t = this.tenant(ref);
    if (!(header instanceof Uint8Array) || header.length > 512) throw decryptionFailed();
    const p = parseStreamHeader(header);
    if (p.org !== ref.org || p.tenant !== ref.tenant) throw decryptionFailed();
    if (guard !== undefined && !guard(p.customer as CustomerId)) throw decryptionFailed();
    const c = this.#h.customerRow(t, p.customer);
    if (!c || c.state !== 'active' || this.#h.shredPending(t.org, t.tenant, p.customer))
      throw decryptionFailed();
    let cek;
    try {
      cek = await this.#h.cekCopy(t, p.customer, p.cekVersion);
    } catch (err) {
      throw passUnavailable(err);
    }
    let opener;
    try {
      opener = new StreamOpener(cek, p, aad);
    } finally {
      cek.fill(0);
    }
    if (!c.enabled || this.#h.disabledCeks(t, p.customer).has(p.cekVersion))
      throw new KbError('DISABLED', 'customer or key version');
    if (p.cekVersion < c.minDec) throw new KbError('VERSION_BELOW_MINIMUM');
    // A shred that ran while the CEK loaded: no stream for it (its abort has already happened).
    try {
      this.#stillThere(ref, p.customer);
    } catch (err) {
      opener.abort();
      throw err;
    }
    const live = this.#streams.track(tenantKey(t.org, t.tenant), p.customer, () => opener.abort());
    return {
      customer: p.customer as CustomerId,
      keyVersion: p.cekVersion as KeyVersion,
      open: (chunk) => live.run(() => opener.open(chunk), false),
      finish: () => live.run(() => opener.finish(), true),
    };
  }
}

/** A user error as an item's result; anything else aborts the batch (as in BatchRunner). */
function itemError(err: unknown): { ok: false; error: KbError } {
  const e = toKbError(err);
  if (!e.isUserError) throw e;
  return { ok: false, error: e };
}

function checkSealInput(plaintext: Uint8Array, aad: Uint8Array): void {
  checkAad(aad);
  if (plaintext.length > MAX_PLAINTEXT_BYTES)
    throw new KbError('TOO_LARGE', `plaintext over ${MAX_PLAINTEXT_BYTES} bytes`);
}

function checkAad(aad: Uint8Array): void {
  if (!(aad instanceof Uint8Array)) throw new KbError('INVALID_ARGUMENT', 'aad must be bytes');
  if (aad.length > MAX_AAD_BYTES) throw new KbError('TOO_LARGE', `aad over ${MAX_AAD_BYTES} bytes`);
}

/** Key-loading failures are the opaque decrypt error, except an HSM outage (retryable, says so). */
function passUnavailable(err: unknown): KbError {
  if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN')) return err;
  return decryptionFailed(err);
}
