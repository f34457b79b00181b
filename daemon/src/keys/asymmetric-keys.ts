/**
 * Tenant asymmetric keys under the hierarchy (AsymmetricKeyApi): named keys with versions, the
 * newest the primary (versions, policies and rotation: asymmetric-key-versions.ts); private keys
 * generated here and stored only wrapped under the tenant's TEK, or a customer's CEK, in its
 * SQLite file (asymmetric-key-material.ts lists the stored forms); unwrapped keys cached
 * with a TTL and a bound and destroyed on eviction. Crypto-shredding is the hierarchy's: the
 * tenant file goes, and the OEK that wrapped every copy of its TEK is destroyed in the HSM.
 * HSM-resident ECDSA keys are destroyed (C_DestroyObject) before the tenant's shred.
 */
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { TenantRef } from '../ids.ts';
import { buildJwks, type Jwk } from '../pqc/public-key-export.ts';
import type { TenantRow } from '../store/registry-rows.ts';
import type * as Api from './asymmetric-key-api.ts';
import { DEFAULT_ASYMMETRIC_KEY_LIMITS, type AsymmetricKeyLimits } from './asymmetric-key-limits.ts';
import { AsymmetricKeyLoader } from './asymmetric-key-loader.ts';
import { AsymmetricKeyUsage } from './asymmetric-key-usage.ts';
import { AsymmetricKeyVersions, customerShredKey } from './asymmetric-key-versions.ts';
import { LoadedKey, type AsymmetricRuntime } from './asymmetric-key-material.ts';
import {
  boxKem,
  decapsulateManyWith,
  decapsulateWith,
  encapsulateManyTo,
  encapsulateTo,
} from './asymmetric-kem-ops.ts';
import {
  checkContext,
  checkMessage,
  signManyWith,
  signWith,
  verifyManyInline,
  verifyManyOnPool,
  verifyOnPool,
} from './asymmetric-key-ops.ts';
import {
  AsymmetricKeyStore,
  asymmetricKeyId,
  purposeOf,
  type AsymmetricKeyRow,
  type AsymmetricKeyType,
} from './asymmetric-key-store.ts';
import { tenantKey, type Hierarchy } from './hierarchy.ts';
import type { ItemResult } from './key-broker-api.ts';
import type { KeyedMutex } from './keyed-mutex.ts';
import { addScheduledRotation } from './lifecycle.ts';
import { LoadedCustomerKeys, type CustomerKeys } from './loaded-customer-keys.ts';
import { shredKeysOf, type ShredKeys } from './shredder.ts';
import { KeyImport, type ImportJob } from './key-import.ts';
import type { ImportWrapping } from '../store/import-job-rows.ts';

export interface AsymmetricKeysOptions {
  readonly runtime: AsymmetricRuntime;
  /** Unwrapped private keys kept (default 5 min, 1,000 entries). */
  readonly cacheTtlMs?: number;
  readonly cacheMaxEntries?: number;
  /** Per-tenant bounds (default DEFAULT_ASYMMETRIC_KEY_LIMITS). */
  readonly limits?: AsymmetricKeyLimits;
}

export { asymmetricKeyId };

export class AsymmetricKeys implements Api.AsymmetricKeyApi {
  readonly #h: Hierarchy;
  readonly #lock: KeyedMutex;
  readonly #rt: AsymmetricRuntime;
  readonly #keys: AsymmetricKeyLoader;
  readonly #usage: AsymmetricKeyUsage;
  readonly #v: AsymmetricKeyVersions;
  readonly #customerKeys = new LoadedCustomerKeys();
  readonly #import: KeyImport;

  constructor(h: Hierarchy, lock: KeyedMutex, hsm: Hsm, o: AsymmetricKeysOptions) {
    this.#h = h;
    this.#lock = lock;
    this.#rt = o.runtime;
    this.#keys = new AsymmetricKeyLoader(h, hsm, o.runtime, {
      ttlMs: o.cacheTtlMs ?? 5 * 60_000,
      maxEntries: o.cacheMaxEntries ?? 1000,
    });
    this.#usage = new AsymmetricKeyUsage(h);
    this.#v = new AsymmetricKeyVersions(
      h,
      lock,
      hsm,
      o.runtime,
      this.#usage,
      (t, id, v) => this.#keys.evict(t, id, v),
      o.limits ?? DEFAULT_ASYMMETRIC_KEY_LIMITS,
    );
    this.#import = new KeyImport(h, o.runtime, this.#v);
    // The broker's rotation scan (Lifecycle.rotateDueKeys) rotates due asymmetric keys too.
    addScheduledRotation(h, (now, org) => this.#v.rotateDueKeys(now, org));
  }

  get runtime(): AsymmetricRuntime {
    return this.#rt;
  }

  // --- lifecycle (asymmetric-key-versions.ts) ---
  createKey(
    ref: Api.KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    opts?: Api.CreateKeyOptions,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#v.createKey(ref, keyId, type, opts);
  }
  rotateKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return this.#v.rotateKey(ref, keyId);
  }
  setKeyPolicy(
    ref: Api.KeyOwner,
    keyId: string,
    policy: Partial<Api.AsymmetricKeyPolicy>,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#v.setKeyPolicy(ref, keyId, policy);
  }
  setKeyVersionEnabled(
    ref: Api.KeyOwner,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#v.setKeyVersionEnabled(ref, keyId, version, enabled);
  }
  listKeys(ref: Api.KeyOwner): Promise<readonly Api.AsymmetricKeyInfo[]> {
    return this.#v.listKeys(ref);
  }
  describeKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return this.#v.describeKey(ref, keyId);
  }
  // --- import (key-import.ts) ---
  createImportJob(
    ref: Api.KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    wrapping: ImportWrapping,
    ttlSeconds?: number,
  ): Promise<ImportJob> {
    return this.#import.createJob(ref, keyId, type, wrapping, ttlSeconds);
  }
  importKey(
    ref: Api.KeyOwner,
    jobId: string,
    wrappedKey: Uint8Array,
    publicKey?: Uint8Array,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#import.importKey(ref, jobId, wrappedKey, publicKey);
  }
  importJobTarget(ref: Api.KeyOwner, jobId: unknown): { keyId: string; type: AsymmetricKeyType } | undefined {
    return this.#import.jobTarget(ref, jobId);
  }

  /** Scheduled rotation (also run by the broker's rotation scan). */
  rotateDueKeys(now: Date): Promise<{ rotated: number; failed: number }> {
    return this.#v.rotateDueKeys(now);
  }

  // --- operations ---
  async publicKey(ref: Api.KeyOwner, keyId: string, version?: number): Promise<Api.PublicKeyResult> {
    const { t, customer } = this.#v.owner(ref);
    const rows = await this.#v.rows(t, keyId, customer);
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    return { type: r.type, version: r.version, publicKey: r.publicKey };
  }

  async jwks(ref: Api.KeyOwner): Promise<{ keys: Jwk[] }> {
    const { t, customer } = this.#v.owner(ref);
    const all = AsymmetricKeyStore.all(this.#h.store(t)).filter(
      (r) => r.customer === customer && purposeOf(r.type) === 'sig',
    );
    // Checked before the state filter: a version disabled by editing the file is refused too.
    await this.#v.verifyRows(t, all);
    const rows = all.filter((r) => r.state === 'enabled');
    return buildJwks(
      rows.map((r) => ({ kind: r.type, publicKey: r.publicKey, kid: `${r.keyId}.${r.version}` })),
    );
  }

  /** The type of a key, for authorisation (FIPS mode) before the call runs; never throws. */
  algorithmOf(ref: Api.KeyOwner, keyId: string): AsymmetricKeyType | undefined {
    try {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      return this.#v.typeOf(t, keyId);
    } catch (err) {
      // The call itself reports a missing tenant or a store failure, through the gate.
      void err;
      return undefined;
    }
  }

  /** The loaded private key of a row; customer keys are remembered for the customer-shred sweep. */
  #load(t: TenantRow, row: AsymmetricKeyRow) {
    if (row.customer !== '') this.#customerKeys.note(t.org, t.tenant, row.customer, row.keyId);
    return this.#keys.get(t, row);
  }

  async sign(
    ref: Api.KeyOwner,
    keyId: string,
    message: Uint8Array,
    context: Uint8Array,
  ): Promise<{ signature: Uint8Array; version: number }> {
    const { t, row } = await this.#v.primaryForUse(ref, keyId, 'sig');
    checkContext(row.type, context);
    checkMessage(row.type, message);
    const k = await this.#load(t, row);
    const signature = await k.use(() => signWith(this.#rt, k, message, context));
    this.#usage.add(t, row.keyId, row.version);
    return { signature, version: row.version };
  }

  async signBatch(
    ref: Api.KeyOwner,
    keyId: string,
    messages: readonly Uint8Array[],
    context: Uint8Array,
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }> {
    const { t, row } = await this.#v.primaryForUse(ref, keyId, 'sig');
    checkContext(row.type, context);
    for (const m of messages) checkMessage(row.type, m);
    const k = await this.#load(t, row);
    const results = await k.use(() => signManyWith(this.#rt, k, messages, context));
    this.#usage.add(t, row.keyId, row.version, results.filter((r) => r.ok).length);
    return { version: row.version, results };
  }

  async verify(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    item: Api.VerifyItem,
    context: Uint8Array,
  ): Promise<{ valid: boolean; version: number }> {
    const [r] = await this.verifyBatch(ref, keyId, version, [item], context);
    if (r === undefined || !r.ok) throw r?.error ?? new KbError('INTERNAL');
    return r.value;
  }

  async verifyBatch(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    items: readonly Api.VerifyItem[],
    context: Uint8Array,
  ): Promise<ItemResult<{ valid: boolean; version: number }>[]> {
    const { t, customer } = this.#v.owner(ref);
    const rows = await this.#v.rows(t, keyId, customer);
    if (purposeOf((rows[0] as AsymmetricKeyRow).type) !== 'sig')
      throw new KbError('INVALID_ARGUMENT', `${(rows[0] as AsymmetricKeyRow).type} keys do not verify`);
    const candidates = this.#v.openers(t, rows, version, 'sig');
    const first = candidates[0];
    if (first === undefined) throw new KbError('DISABLED', 'key version');
    checkContext(first.type, context);
    // Big ML-DSA batches on two or more workers: split across them (the event loop stays free).
    if (verifyOnPool(this.#rt, first.type, items.length))
      return verifyManyOnPool(this.#rt, candidates, items, context);
    return verifyManyInline(this.#rt, candidates, items, context);
  }

  async encapsulate(
    ref: Api.KeyOwner,
    keyId: string,
  ): Promise<{ cipherText: Uint8Array; sharedSecret: Uint8Array; version: number }> {
    const { t, row } = await this.#v.primaryForUse(ref, keyId, 'kem');
    const e = await encapsulateTo(this.#rt, row.type, row.publicKey);
    this.#usage.add(t, row.keyId, row.version);
    return { ...e, version: row.version };
  }

  async encapsulateBatch(
    ref: Api.KeyOwner,
    keyId: string,
    count: number,
  ): Promise<{ encapsulations: { cipherText: Uint8Array; sharedSecret: Uint8Array }[]; version: number }> {
    const { t, row } = await this.#v.primaryForUse(ref, keyId, 'kem');
    const encapsulations = await encapsulateManyTo(this.#rt, row.type, row.publicKey, count);
    this.#usage.add(t, row.keyId, row.version, encapsulations.length);
    return { encapsulations, version: row.version };
  }

  /** The version a decapsulation uses (undefined: the primary), checked against minDec. */
  async #decapsulator(ref: Api.KeyOwner, keyId: string, version: number | undefined) {
    const { t, customer } = this.#v.owner(ref);
    const rows = await this.#v.rows(t, keyId, customer);
    const row =
      version === undefined
        ? this.#v.version(rows, undefined, 'kem')
        : this.#v.openers(t, rows, version, 'kem')[0];
    if (row === undefined) throw new KbError('NOT_FOUND', 'key version');
    if (version === undefined && row.version < this.#v.policy(t, row.keyId).minDec)
      throw new KbError('VERSION_BELOW_MINIMUM');
    return { t, row };
  }

  async decapsulate(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    cipherText: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; version: number }> {
    const { t, row } = await this.#decapsulator(ref, keyId, version);
    const k = await this.#load(t, row);
    try {
      return {
        sharedSecret: await k.use(() => decapsulateWith(this.#rt, k, cipherText)),
        version: row.version,
      };
    } catch (err) {
      throw decryptionFailed(err);
    }
  }

  async decapsulateBatch(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    cipherTexts: readonly Uint8Array[],
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }> {
    const { t, row } = await this.#decapsulator(ref, keyId, version);
    const k = await this.#load(t, row);
    const results = await k.use(() => decapsulateManyWith(this.#rt, k, cipherTexts));
    return { version: row.version, results };
  }

  async sealBox(
    ref: Api.KeyOwner,
    keyId: string,
    plaintext: Uint8Array,
    infoBytes: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ sealed: Uint8Array; version: number }> {
    const { t, row } = await this.#v.primaryForUse(ref, keyId, 'kem');
    const sealed = await this.#rt.boxes.seal(boxKem(row.type), row.publicKey, plaintext, infoBytes, aad);
    this.#usage.add(t, row.keyId, row.version);
    return { sealed, version: row.version };
  }

  async openBox(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    sealed: Uint8Array,
    infoBytes: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ plaintext: Uint8Array; version: number }> {
    const { t, customer } = this.#v.owner(ref);
    const rows = await this.#v.rows(t, keyId, customer);
    const kem = boxKem((rows[0] as AsymmetricKeyRow).type);
    for (const row of this.#v.openers(t, rows, version, 'kem')) {
      const k = await this.#load(t, row);
      const box = k.box;
      if (box === undefined) continue;
      try {
        const plaintext = await k.use(() => this.#rt.boxes.open(kem, box, sealed, infoBytes, aad));
        return { plaintext, version: row.version };
      } catch (err) {
        if (!(err instanceof KbError) || !err.isUserError) throw err;
      }
    }
    throw decryptionFailed();
  }

  /**
   * Before a tenant shred: refuse new keys, destroy its HSM-resident keys (their only copy is the
   * token object, so C_DestroyObject is the shred), zero its cached keys. Returns the labels of
   * the destroyed token keys and every key of the tenant, for the receipt.
   */
  async beforeTenantShred(ref: TenantRef): Promise<ShredKeys> {
    const k = tenantKey(ref.org, ref.tenant);
    this.#v.shredding.add(k);
    return this.#lock.run(k, async () => {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      const owned = await this.#shredKeys(t, () => true);
      this.#keys.evictTenant(ref.org, ref.tenant);
      this.#usage.drop(ref.org, ref.tenant);
      return owned;
    });
  }

  /**
   * After the shred epoch, before the receipt: zero what a load in flight cached meanwhile (of
   * the tenant, or of one customer) and wait until every worker has dropped its copies of them.
   */
  async purgeShredded(ref: TenantRef, customer?: string): Promise<void> {
    if (customer === undefined) this.#keys.evictTenant(ref.org, ref.tenant);
    else {
      const e = this.#customerKeys.take(ref.org, ref.tenant, customer);
      if (e !== undefined) this.#dropLoaded(e);
    }
    // Keys evicted while an operation used them are freed when it settles (bounded: operations
    // are CPU-bound and short); their worker evictions are posted then. Then one round trip to
    // every worker waits for all evictions posted so far.
    await Promise.race([LoadedKey.draining(), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await this.#rt.pool?.evictKeys([]);
  }

  /** After a tenant shred (done or failed): zero anything cached meanwhile. */
  afterTenantShred(ref: TenantRef): void {
    this.#keys.evictTenant(ref.org, ref.tenant);
    this.#v.shredding.delete(tenantKey(ref.org, ref.tenant));
  }

  /**
   * Before a customer shred: refuse new keys for the customer and destroy its HSM-resident keys.
   * First, because the shred deletes the rows that name them: a crash after this step leaves
   * keys that no longer sign, and the retried shred finds nothing left to destroy. Returns the
   * labels of the destroyed token keys and every key of the customer, for the receipt.
   */
  async beforeCustomerShred(ref: TenantRef, customer: string): Promise<ShredKeys> {
    this.#v.shredding.add(customerShredKey(ref, customer));
    return this.#lock.run(tenantKey(ref.org, ref.tenant), () =>
      this.#shredKeys(this.#h.activeTenant(ref.org, ref.tenant), (r) => r.customer === customer),
    );
  }

  /** Destroy the token keys among `which` rows; name every key among them (for the receipt). */
  #shredKeys(t: TenantRow, which: (r: AsymmetricKeyRow) => boolean): Promise<ShredKeys> {
    return shredKeysOf(AsymmetricKeyStore.all(this.#h.store(t)).filter(which), (label) =>
      this.#v.destroyHsmKey(label),
    );
  }

  /** How many unwrapped private keys are held in memory now. */
  get loadedKeys(): number {
    return this.#keys.size;
  }

  /** After a customer shred (done or failed): zero that customer's loaded keys at once. */
  afterCustomerShred(ref: TenantRef, customer: string): void {
    this.#v.shredding.delete(customerShredKey(ref, customer));
    const e = this.#customerKeys.take(ref.org, ref.tenant, customer);
    if (e !== undefined) this.#dropLoaded(e);
  }

  /** Zero loaded keys of customers destroyed since (their rows and CEKs are gone already). */
  #sweepCustomers(): void {
    const gone = this.#customerKeys.takeGone((e) => {
      const t = this.#h.tenantRow(e.org, e.tenant);
      if (!t || t.state !== 'active') return true;
      try {
        return this.#h.customerRow(t, e.customer)?.state !== 'active';
      } catch (err) {
        void err; // an unreadable file: leave the keys to their TTL
        return false;
      }
    });
    for (const e of gone) this.#dropLoaded(e);
  }

  /** Zero a customer's loaded keys and drop its unwritten use counts (its rows are gone). */
  #dropLoaded(e: CustomerKeys): void {
    for (const id of e.keyIds) this.#keys.evictKey(e.org, e.tenant, id);
    this.#usage.drop(e.org, e.tenant, e.keyIds);
  }

  /** Periodic: expire cached keys, drop those of destroyed customers, write use counts. */
  sweep(onError: (err: unknown) => void = () => undefined): void {
    this.#keys.sweep();
    this.#sweepCustomers();
    this.#usage.flush(onError);
  }

  close(): void {
    this.#usage.flush(() => undefined, true);
    this.#keys.clear();
  }
}
