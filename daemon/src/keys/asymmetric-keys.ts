/**
 * Tenant asymmetric keys under the hierarchy (AsymmetricKeyApi): named keys with versions, the
 * newest the primary; private keys generated here and stored only wrapped under the tenant's TEK
 * in its SQLite file (asymmetric-key-material.ts lists the stored forms); unwrapped keys cached
 * with a TTL and a bound and destroyed on eviction. Crypto-shredding is the hierarchy's: the
 * tenant file goes, and the OEK that wrapped every copy of its TEK is destroyed in the HSM.
 * HSM-resident ECDSA keys are destroyed (C_DestroyObject) before the tenant's shred.
 */
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { TenantRef } from '../ids.ts';
import type { PolicyRow } from '../store/registry-rows.ts';
import { buildJwks, type Jwk } from '../pqc/public-key-export.ts';
import type { TenantRow } from '../store/registry-rows.ts';
import { wrapTenantKey } from '../wire/wrapped-key-v1.ts';
import type * as Api from './asymmetric-key-api.ts';
import { AsymmetricKeyLoader } from './asymmetric-key-loader.ts';
import { AsymmetricKeyUsage } from './asymmetric-key-usage.ts';
import { generateKey, type AsymmetricRuntime } from './asymmetric-key-material.ts';
import {
  boxKem,
  checkContext,
  checkMessage,
  decapsulateWith,
  encapsulateTo,
  signManyWith,
  signWith,
  verifyWith,
} from './asymmetric-key-ops.ts';
import {
  AsymmetricKeyStore,
  DEFAULT_ASYMMETRIC_POLICY,
  asymmetricKeyId,
  keyInfo,
  purposeOf,
  type AsymmetricKeyRow,
  type AsymmetricKeyType,
} from './asymmetric-key-store.ts';
import { tenantKey, type Hierarchy } from './hierarchy.ts';
import type { ItemResult, KeyPolicy } from './key-broker-api.ts';
import { mergePolicy } from './key-info.ts';
import type { KeyedMutex } from './keyed-mutex.ts';
import { addScheduledRotation } from './lifecycle.ts';

export interface AsymmetricKeysOptions {
  readonly runtime: AsymmetricRuntime;
  /** Unwrapped private keys kept (default 5 min, 1,000 entries). */
  readonly cacheTtlMs?: number;
  readonly cacheMaxEntries?: number;
}

export { asymmetricKeyId };

/** A customer key's loaded versions are tracked so a customer shred also drops them from memory. */
interface CustomerKeys {
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly keyIds: Set<string>;
}

export class AsymmetricKeys implements Api.AsymmetricKeyApi {
  readonly #h: Hierarchy;
  readonly #lock: KeyedMutex;
  readonly #hsm: Hsm;
  readonly #rt: AsymmetricRuntime;
  readonly #keys: AsymmetricKeyLoader;
  readonly #usage: AsymmetricKeyUsage;
  /** Tenants whose shred has begun: no new HSM keys for them. */
  readonly #shredding = new Set<string>();
  readonly #customerKeys = new Map<string, CustomerKeys>();

  constructor(h: Hierarchy, lock: KeyedMutex, hsm: Hsm, o: AsymmetricKeysOptions) {
    this.#h = h;
    this.#lock = lock;
    this.#hsm = hsm;
    this.#rt = o.runtime;
    this.#keys = new AsymmetricKeyLoader(h, hsm, o.runtime, {
      ttlMs: o.cacheTtlMs ?? 5 * 60_000,
      maxEntries: o.cacheMaxEntries ?? 1000,
    });
    this.#usage = new AsymmetricKeyUsage(h);
    // The broker's rotation scan (Lifecycle.rotateDueKeys) rotates due asymmetric keys too.
    addScheduledRotation(h, (now) => this.rotateDueKeys(now));
  }

  get runtime(): AsymmetricRuntime {
    return this.#rt;
  }

  /** The caller's tenant: active, enabled, in an enabled org. */
  #tenant(ref: TenantRef): TenantRow {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    const o = this.#h.orgRow(ref.org);
    if (!o || !o.enabled || !t.enabled) throw new KbError('DISABLED', 'tenant');
    return t;
  }

  /** The tenant and the customer named ('' for tenant-level keys): active, enabled. */
  #owner(ref: Api.KeyOwner): { t: TenantRow; customer: string } {
    const t = this.#tenant(ref);
    if (ref.customer === undefined) return { t, customer: '' };
    const c = this.#h.customerRow(t, ref.customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    if (!c.enabled) throw new KbError('DISABLED', 'customer');
    return { t, customer: ref.customer };
  }

  /** Every version of a key of this owner (a key of another customer, or of the tenant, is NOT_FOUND). */
  #rows(t: TenantRow, keyId: string, customer: string): AsymmetricKeyRow[] {
    const rows = AsymmetricKeyStore.versions(this.#h.store(t), asymmetricKeyId(keyId));
    if (rows.length === 0 || (rows[0] as AsymmetricKeyRow).customer !== customer)
      throw new KbError('NOT_FOUND', 'key');
    return rows;
  }

  #policy(t: TenantRow, keyId: string): PolicyRow {
    return AsymmetricKeyStore.policy(this.#h.store(t), keyId);
  }

  #info(t: TenantRow, rows: AsymmetricKeyRow[]): Api.AsymmetricKeyInfo {
    const keyId = (rows[0] as AsymmetricKeyRow).keyId;
    return keyInfo(rows, this.#policy(t, keyId), (v) => this.#usage.pending(t, keyId, v));
  }

  /** One version (undefined: the primary), enabled, of the given purpose. */
  #version(rows: AsymmetricKeyRow[], version: number | undefined, purpose?: 'kem' | 'sig'): AsymmetricKeyRow {
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    if (purpose !== undefined && purposeOf(r.type) !== purpose)
      throw new KbError('INVALID_ARGUMENT', `${r.type} keys cannot be used for this operation`);
    if (r.state !== 'enabled') throw new KbError('DISABLED', 'key version');
    return r;
  }

  /** Versions that may verify / decapsulate / open: an explicit one (at least minDec), or every enabled one. */
  #openers(t: TenantRow, rows: AsymmetricKeyRow[], version: number | undefined, purpose: 'kem' | 'sig') {
    const minDec = this.#policy(t, (rows[0] as AsymmetricKeyRow).keyId).minDec;
    if (version !== undefined) {
      const r = this.#version(rows, version, purpose);
      if (r.version < minDec) throw new KbError('VERSION_BELOW_MINIMUM');
      return [r];
    }
    return rows.filter((r) => r.state === 'enabled' && r.version >= minDec).reverse();
  }

  /**
   * The primary for a signature / encapsulation / seal, rotated first when its period is over or
   * its usage limit reached (as symmetric keys do on encrypt); below minEnc is refused.
   */
  async #primaryForUse(ref: Api.KeyOwner, keyId: string, purpose: 'kem' | 'sig') {
    const { t, customer } = this.#owner(ref);
    let rows = this.#rows(t, keyId, customer);
    const p = this.#policy(t, keyId);
    const last = rows[rows.length - 1] as AsymmetricKeyRow;
    if (purposeOf(last.type) === purpose && this.#due(t, last, p, this.#h.d.now())) {
      await this.#rotateIfPrimary(ref, keyId, last.version);
      rows = this.#rows(t, keyId, customer);
    }
    const row = this.#version(rows, undefined, purpose);
    if (row.version < p.minEnc) throw new KbError('VERSION_BELOW_MINIMUM');
    return { t, row };
  }

  #due(t: TenantRow, primary: AsymmetricKeyRow, p: PolicyRow, now: Date): boolean {
    if (p.rotationPeriodS > 0 && Date.parse(primary.createdAt) + p.rotationPeriodS * 1000 <= now.getTime())
      return true;
    return p.usageLimit > 0 && this.#usage.total(t, primary.keyId, primary.version) >= p.usageLimit;
  }

  async createKey(
    ref: Api.KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    opts: Api.CreateKeyOptions = {},
  ): Promise<Api.AsymmetricKeyInfo> {
    const id = asymmetricKeyId(keyId);
    const hsmEcdsa = opts.hsmEcdsa === true;
    if (hsmEcdsa && type !== 'composite-mldsa65-ecdsa-p256')
      throw new KbError('INVALID_ARGUMENT', 'hsm_ecdsa applies to composite keys only');
    // A customer's shred destroys its CEKs, not token objects: HSM-resident keys are tenant-level.
    if (ref.customer !== undefined && (hsmEcdsa || type === 'ecdsa-p256'))
      throw new KbError('INVALID_ARGUMENT', 'keys in the HSM (ECDSA P-256, hsm_ecdsa) are tenant-level only');
    const policy = mergePolicy(DEFAULT_ASYMMETRIC_POLICY, opts.policy as Partial<KeyPolicy> | undefined, 1);
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t } = this.#owner(ref);
      if (AsymmetricKeyStore.versions(this.#h.store(t), id).length > 0)
        throw new KbError('ALREADY_EXISTS', 'key');
      await this.#addVersion(ref, id, 1, type, hsmEcdsa, policy);
      const o = this.#owner(ref);
      return this.#info(o.t, this.#rows(o.t, id, o.customer));
    });
  }

  async rotateKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.#owner(ref);
      const rows = this.#rows(t, keyId, customer);
      const last = rows[rows.length - 1] as AsymmetricKeyRow;
      await this.#addVersion(ref, last.keyId, last.version + 1, last.type, last.meta.hsmLabel !== undefined);
      return this.#info(t, this.#rows(this.#owner(ref).t, keyId, customer));
    });
  }

  /** Rotate only if `fromVersion` is still the primary (concurrent callers share one rotation). */
  async #rotateIfPrimary(ref: Api.KeyOwner, keyId: string, fromVersion: number): Promise<void> {
    await this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.#owner(ref);
      const rows = this.#rows(t, keyId, customer);
      const last = rows[rows.length - 1] as AsymmetricKeyRow;
      if (last.version !== fromVersion) return;
      await this.#addVersion(ref, last.keyId, last.version + 1, last.type, last.meta.hsmLabel !== undefined);
    });
  }

  /**
   * Generate, wrap, insert (with the key's policy when given, in one transaction). Tenant-level
   * keys are wrapped under the primary TEK; customer keys under the customer's primary CEK (the
   * CEK itself binds the customer: the row identity is the same as a tenant key's, the key is not).
   */
  async #addVersion(
    ref: Api.KeyOwner,
    keyId: string,
    version: number,
    type: AsymmetricKeyType,
    hsmEcdsa: boolean,
    policy?: PolicyRow,
  ): Promise<void> {
    if (this.#shredding.has(tenantKey(ref.org, ref.tenant))) throw new KbError('NOT_FOUND', 'tenant');
    const g = await generateKey(this.#rt, this.#hsm, type, hsmEcdsa || type === 'ecdsa-p256');
    try {
      const { t, customer } = this.#owner(ref);
      const c = customer === '' ? undefined : this.#h.customerRow(t, customer);
      const wrapVersion = c === undefined ? t.primaryTek : c.primaryCek;
      const kek =
        c === undefined
          ? await this.#h.tekCopy(t.org, t.tenant, wrapVersion)
          : await this.#h.cekCopy(t, customer, wrapVersion);
      try {
        const wrapped = wrapTenantKey(
          kek,
          { org: t.org, tenant: t.tenant, keyId, keyVersion: version, tekVersion: wrapVersion },
          g.secret.expose(),
        );
        const s = this.#h.store(this.#owner(ref).t);
        s.tx(() => {
          AsymmetricKeyStore.insert(s, {
            keyId,
            version,
            type,
            customer,
            tekVersion: c === undefined ? wrapVersion : 0,
            cekVersion: c === undefined ? 0 : wrapVersion,
            uses: 0,
            wrapped,
            publicKey: g.publicKey,
            state: 'enabled',
            createdAt: this.#h.d.now().toISOString(),
            meta: g.hsmLabel !== undefined ? { hsmLabel: g.hsmLabel } : {},
          });
          if (policy !== undefined) AsymmetricKeyStore.setPolicy(s, keyId, policy);
        });
      } finally {
        kek.fill(0);
      }
    } catch (err) {
      // A key that never made it into the file must not linger in the token.
      if (g.hsmLabel !== undefined) await this.#destroyHsmKey(g.hsmLabel).catch(() => undefined);
      throw err;
    } finally {
      g.secret.destroy();
    }
  }

  async setKeyPolicy(
    ref: Api.KeyOwner,
    keyId: string,
    policy: Partial<Api.AsymmetricKeyPolicy>,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), () => {
      const { t, customer } = this.#owner(ref);
      const rows = this.#rows(t, keyId, customer);
      const primary = (rows[rows.length - 1] as AsymmetricKeyRow).version;
      const merged = mergePolicy(this.#policy(t, keyId), policy as Partial<KeyPolicy>, primary);
      AsymmetricKeyStore.setPolicy(this.#h.store(t), asymmetricKeyId(keyId), merged);
      return Promise.resolve(this.#info(t, rows));
    });
  }

  async setKeyVersionEnabled(
    ref: Api.KeyOwner,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.#owner(ref);
      const rows = this.#rows(t, keyId, customer);
      const r = rows.find((x) => x.version === version);
      if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
      if (!enabled && r.version === (rows[rows.length - 1] as AsymmetricKeyRow).version)
        throw new KbError('FAILED_PRECONDITION', 'the primary version cannot be disabled; rotate first');
      AsymmetricKeyStore.setState(this.#h.store(t), r.keyId, version, enabled ? 'enabled' : 'disabled');
      if (!enabled) this.#keys.evict(t, r.keyId, version);
      return this.#info(t, this.#rows(t, keyId, customer));
    });
  }

  listKeys(ref: Api.KeyOwner): Promise<readonly Api.AsymmetricKeyInfo[]> {
    const { t, customer } = this.#owner(ref);
    const byId = new Map<string, AsymmetricKeyRow[]>();
    for (const r of AsymmetricKeyStore.all(this.#h.store(t))) {
      if (r.customer !== customer) continue;
      const list = byId.get(r.keyId) ?? [];
      list.push(r);
      byId.set(r.keyId, list);
    }
    return Promise.resolve([...byId.values()].map((rows) => this.#info(t, rows)));
  }

  describeKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    const { t, customer } = this.#owner(ref);
    return Promise.resolve(this.#info(t, this.#rows(t, keyId, customer)));
  }

  publicKey(ref: Api.KeyOwner, keyId: string, version?: number): Promise<Api.PublicKeyResult> {
    const { t, customer } = this.#owner(ref);
    const rows = this.#rows(t, keyId, customer);
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    return Promise.resolve({ type: r.type, version: r.version, publicKey: r.publicKey });
  }

  jwks(ref: Api.KeyOwner): Promise<{ keys: Jwk[] }> {
    const { t, customer } = this.#owner(ref);
    const rows = AsymmetricKeyStore.all(this.#h.store(t)).filter(
      (r) => r.customer === customer && purposeOf(r.type) === 'sig' && r.state === 'enabled',
    );
    return Promise.resolve(
      buildJwks(rows.map((r) => ({ kind: r.type, publicKey: r.publicKey, kid: `${r.keyId}.${r.version}` }))),
    );
  }

  /** The type of a key, for authorisation (FIPS mode) before the call runs; never throws. */
  algorithmOf(ref: Api.KeyOwner, keyId: string): AsymmetricKeyType | undefined {
    try {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      return AsymmetricKeyStore.typeOf(this.#h.store(t), keyId);
    } catch (err) {
      // The call itself reports a missing tenant or a store failure, through the gate.
      void err;
      return undefined;
    }
  }

  /** The loaded private key of a row; customer keys are remembered for the customer-shred sweep. */
  #load(t: TenantRow, row: AsymmetricKeyRow) {
    if (row.customer !== '') {
      const k = `${t.org}/${t.tenant}/${row.customer}`;
      const e = this.#customerKeys.get(k) ?? {
        org: t.org,
        tenant: t.tenant,
        customer: row.customer,
        keyIds: new Set<string>(),
      };
      e.keyIds.add(row.keyId);
      this.#customerKeys.set(k, e);
    }
    return this.#keys.get(t, row);
  }

  async sign(
    ref: Api.KeyOwner,
    keyId: string,
    message: Uint8Array,
    context: Uint8Array,
  ): Promise<{ signature: Uint8Array; version: number }> {
    const { t, row } = await this.#primaryForUse(ref, keyId, 'sig');
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
    const { t, row } = await this.#primaryForUse(ref, keyId, 'sig');
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

  verifyBatch(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    items: readonly Api.VerifyItem[],
    context: Uint8Array,
  ): Promise<ItemResult<{ valid: boolean; version: number }>[]> {
    const { t, customer } = this.#owner(ref);
    const rows = this.#rows(t, keyId, customer);
    if (purposeOf((rows[0] as AsymmetricKeyRow).type) !== 'sig')
      throw new KbError('INVALID_ARGUMENT', `${(rows[0] as AsymmetricKeyRow).type} keys do not verify`);
    const candidates = this.#openers(t, rows, version, 'sig');
    const first = candidates[0];
    if (first === undefined) throw new KbError('DISABLED', 'key version');
    checkContext(first.type, context);
    return Promise.resolve(
      items.map((it): ItemResult<{ valid: boolean; version: number }> => {
        try {
          for (const c of candidates) {
            if (verifyWith(this.#rt, c.type, c.publicKey, it.message, it.signature, context))
              return { ok: true, value: { valid: true, version: c.version } };
          }
          return { ok: true, value: { valid: false, version: 0 } };
        } catch (err) {
          if (err instanceof KbError && err.isUserError) return { ok: false, error: err };
          throw err;
        }
      }),
    );
  }

  async encapsulate(
    ref: Api.KeyOwner,
    keyId: string,
  ): Promise<{ cipherText: Uint8Array; sharedSecret: Uint8Array; version: number }> {
    const { t, row } = await this.#primaryForUse(ref, keyId, 'kem');
    const e = await encapsulateTo(this.#rt, row.type, row.publicKey);
    this.#usage.add(t, row.keyId, row.version);
    return { ...e, version: row.version };
  }

  /** The version a decapsulation uses (undefined: the primary), checked against minDec. */
  #decapsulator(ref: Api.KeyOwner, keyId: string, version: number | undefined) {
    const { t, customer } = this.#owner(ref);
    const rows = this.#rows(t, keyId, customer);
    const row =
      version === undefined
        ? this.#version(rows, undefined, 'kem')
        : this.#openers(t, rows, version, 'kem')[0];
    if (row === undefined) throw new KbError('NOT_FOUND', 'key version');
    if (version === undefined && row.version < this.#policy(t, row.keyId).minDec)
      throw new KbError('VERSION_BELOW_MINIMUM');
    return { t, row };
  }

  async decapsulate(
    ref: Api.KeyOwner,
    keyId: string,
    version: number | undefined,
    cipherText: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; version: number }> {
    const { t, row } = this.#decapsulator(ref, keyId, version);
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
    const { t, row } = this.#decapsulator(ref, keyId, version);
    const k = await this.#load(t, row);
    const results = await k.use(() =>
      Promise.all(
        cipherTexts.map((ct) =>
          decapsulateWith(this.#rt, k, ct).then(
            (value): ItemResult<Uint8Array> => ({ ok: true, value }),
            (err: unknown): ItemResult<Uint8Array> => ({ ok: false, error: decryptionFailed(err) }),
          ),
        ),
      ),
    );
    return { version: row.version, results };
  }

  async sealBox(
    ref: Api.KeyOwner,
    keyId: string,
    plaintext: Uint8Array,
    infoBytes: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ sealed: Uint8Array; version: number }> {
    const { t, row } = await this.#primaryForUse(ref, keyId, 'kem');
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
    const { t, customer } = this.#owner(ref);
    const rows = this.#rows(t, keyId, customer);
    const kem = boxKem((rows[0] as AsymmetricKeyRow).type);
    for (const row of this.#openers(t, rows, version, 'kem')) {
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
   * Scheduled rotation (Lifecycle.rotateDueKeys): a new primary for every key whose primary is
   * older than its rotation period. One failure does not stop the rest.
   */
  async rotateDueKeys(now: Date): Promise<{ rotated: number; failed: number }> {
    let rotated = 0;
    let failed = 0;
    for (const t of this.#h.d.registry.listActiveTenants()) {
      try {
        for (const p of AsymmetricKeyStore.periodic(this.#h.store(t))) {
          const rows = AsymmetricKeyStore.versions(this.#h.store(t), p.keyId);
          const last = rows[rows.length - 1];
          if (last === undefined || Date.parse(last.createdAt) + p.rotationPeriodS * 1000 > now.getTime())
            continue;
          const owner = {
            org: t.org,
            tenant: t.tenant,
            ...(last.customer !== '' ? { customer: last.customer } : {}),
          } as Api.KeyOwner;
          try {
            await this.#rotateIfPrimary(owner, p.keyId, last.version);
            rotated++;
          } catch (err) {
            failed++;
            void err;
          }
        }
      } catch (err) {
        // An unreadable tenant file: counted, the scan goes on (as for the symmetric keys).
        failed++;
        void err;
      }
    }
    return { rotated, failed };
  }

  async #destroyHsmKey(label: string): Promise<void> {
    const ref = await this.#hsm.findKey(label, 'signing');
    if (ref !== undefined) await this.#hsm.destroyKey(ref);
  }

  /**
   * Before a tenant shred: refuse new keys, destroy its HSM-resident keys (their only copy is the
   * token object, so C_DestroyObject is the shred), zero its cached keys.
   */
  async beforeTenantShred(ref: TenantRef): Promise<void> {
    const k = tenantKey(ref.org, ref.tenant);
    this.#shredding.add(k);
    await this.#lock.run(k, async () => {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      for (const r of AsymmetricKeyStore.all(this.#h.store(t))) {
        if (r.meta.hsmLabel !== undefined) await this.#destroyHsmKey(r.meta.hsmLabel);
      }
      this.#keys.evictTenant(ref.org, ref.tenant);
      this.#usage.drop(ref.org, ref.tenant);
    });
  }

  /** After a tenant shred (done or failed): zero anything cached meanwhile. */
  afterTenantShred(ref: TenantRef): void {
    this.#keys.evictTenant(ref.org, ref.tenant);
    this.#shredding.delete(tenantKey(ref.org, ref.tenant));
  }

  /** Zero loaded keys of customers destroyed since (their rows and CEKs are gone already). */
  #sweepCustomers(): void {
    for (const [k, e] of this.#customerKeys) {
      const t = this.#h.tenantRow(e.org, e.tenant);
      let gone = !t || t.state !== 'active';
      try {
        if (t && !gone) gone = this.#h.customerRow(t, e.customer)?.state !== 'active';
      } catch (err) {
        void err; // an unreadable file: leave the keys to their TTL
      }
      if (!gone) continue;
      for (const id of e.keyIds) this.#keys.evictKey(e.org, e.tenant, id);
      this.#usage.drop(e.org, e.tenant, e.keyIds);
      this.#customerKeys.delete(k);
    }
  }

  /** Periodic: expire cached keys, drop those of destroyed customers, write use counts. */
  sweep(onError: (err: unknown) => void = () => undefined): void {
    this.#keys.sweep();
    this.#sweepCustomers();
    this.#usage.flush(onError);
  }

  close(): void {
    this.#usage.flush(() => undefined);
    this.#keys.clear();
  }
}
