/**
 * Versions, policies and rotation of tenant asymmetric keys (the management half of
 * AsymmetricKeys): who owns a key (the tenant, or one of its customers), which version an
 * operation uses, new versions (generated, wrapped under the TEK or the customer's CEK, inserted),
 * and rotation as for symmetric keys — on demand, when the primary is older than the key's
 * rotation period (the broker's rotation scan, or the next use), at its usage limit (next use).
 */
import { KbError } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { TenantRef } from '../ids.ts';
import type { PolicyRow, TenantRow } from '../store/registry-rows.ts';
import type * as Api from './asymmetric-key-api.ts';
import { checkNewVersion, type AsymmetricKeyLimits } from './asymmetric-key-limits.ts';
import { generateKey, type AsymmetricRuntime, type GeneratedKey } from './asymmetric-key-material.ts';
import {
  AsymmetricKeyStore,
  DEFAULT_ASYMMETRIC_POLICY,
  asymmetricKeyId,
  keyInfo,
  purposeOf,
  type AsymmetricKeyRow,
  type AsymmetricKeyType,
} from './asymmetric-key-store.ts';
import { wrapRowSecret } from './asymmetric-key-binding.ts';
import { AsymmetricKeyRowCache } from './asymmetric-key-row-cache.ts';
import { AsymmetricRowVerifier } from './asymmetric-row-verifier.ts';
import type { AsymmetricKeyUsage } from './asymmetric-key-usage.ts';
import { tenantKey, type Hierarchy } from './hierarchy.ts';
import type { KeyPolicy } from './key-broker-api.ts';
import { mergePolicy } from './key-info.ts';
import type { KeyedMutex } from './keyed-mutex.ts';

/** The `shredding` entry of a customer whose shred has begun. */
export const customerShredKey = (ref: TenantRef, customer: string): string =>
  `${tenantKey(ref.org, ref.tenant)}/${customer}`;

/** Key rows, policies and new versions of the tenants' asymmetric keys. */
export class AsymmetricKeyVersions {
  readonly #h: Hierarchy;
  readonly #lock: KeyedMutex;
  readonly #hsm: Hsm;
  readonly #rt: AsymmetricRuntime;
  readonly #usage: AsymmetricKeyUsage;
  readonly #evict: (t: TenantRow, keyId: string, version: number) => void;
  readonly #limits: AsymmetricKeyLimits;
  /** Tenants (`org/tenant`) and customers (`org/tenant/customer`) whose shred has begun: no new keys for them. */
  readonly shredding = new Set<string>();
  readonly #rows = new AsymmetricKeyRowCache();
  readonly #verifier: AsymmetricRowVerifier;

  constructor(
    h: Hierarchy,
    lock: KeyedMutex,
    hsm: Hsm,
    rt: AsymmetricRuntime,
    usage: AsymmetricKeyUsage,
    evict: (t: TenantRow, keyId: string, version: number) => void,
    limits: AsymmetricKeyLimits,
  ) {
    this.#h = h;
    this.#lock = lock;
    this.#hsm = hsm;
    this.#rt = rt;
    this.#usage = usage;
    this.#evict = evict;
    this.#limits = limits;
    this.#verifier = new AsymmetricRowVerifier(h, hsm, rt);
  }

  /** The caller's tenant: active, enabled, in an enabled org. */
  tenant(ref: TenantRef): TenantRow {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    // A destroy is recorded (some keys may be gone already): the tenant is gone for its callers.
    if (this.#h.shredPending(ref.org, ref.tenant)) throw new KbError('NOT_FOUND', 'tenant');
    const o = this.#h.orgRow(ref.org);
    if (!o || !o.enabled || !t.enabled) throw new KbError('DISABLED', 'tenant');
    return t;
  }

  /** The tenant and the customer named ('' for tenant-level keys): active, enabled. */
  owner(ref: Api.KeyOwner): { t: TenantRow; customer: string } {
    const t = this.tenant(ref);
    if (ref.customer === undefined) return { t, customer: '' };
    const c = this.#h.customerRow(t, ref.customer);
    if (!c || c.state !== 'active' || this.#h.shredPending(ref.org, ref.tenant, ref.customer))
      throw new KbError('NOT_FOUND', 'customer');
    if (!c.enabled) throw new KbError('DISABLED', 'customer');
    return { t, customer: ref.customer };
  }

  /**
   * Every version of a key of this owner (a key of another customer, or of the tenant, is
   * NOT_FOUND), each checked against its wrapped private key first (KEY_INTEGRITY if edited).
   */
  async rows(t: TenantRow, keyId: string, customer: string): Promise<AsymmetricKeyRow[]> {
    const { rows, policy } = this.#rows.get(this.#h.store(t), asymmetricKeyId(keyId));
    if (rows.length === 0 || (rows[0] as AsymmetricKeyRow).customer !== customer)
      throw new KbError('NOT_FOUND', 'key');
    await this.#verifier.verify(t, rows, policy);
    return [...rows];
  }

  /** Check rows read directly from the store (JWKS, listings), each with its key's policy, before use. */
  async verifyRows(t: TenantRow, rows: readonly AsymmetricKeyRow[]): Promise<void> {
    const byKey = new Map<string, AsymmetricKeyRow[]>();
    for (const r of rows) byKey.set(r.keyId, [...(byKey.get(r.keyId) ?? []), r]);
    for (const [keyId, list] of byKey) await this.#verifier.verify(t, list, this.policy(t, keyId));
  }

  policy(t: TenantRow, keyId: string): PolicyRow {
    return { ...this.#rows.get(this.#h.store(t), keyId).policy };
  }

  /** The type of a key (any version: it never changes), or undefined when there is no such key. */
  typeOf(t: TenantRow, keyId: string): AsymmetricKeyType | undefined {
    return this.#rows.get(this.#h.store(t), keyId).rows[0]?.type;
  }

  info(t: TenantRow, rows: AsymmetricKeyRow[]): Api.AsymmetricKeyInfo {
    const keyId = (rows[0] as AsymmetricKeyRow).keyId;
    return keyInfo(rows, this.policy(t, keyId), (v) => this.#usage.pending(t, keyId, v));
  }

  /** One version (undefined: the primary), enabled, of the given purpose. */
  version(rows: AsymmetricKeyRow[], version: number | undefined, purpose?: 'kem' | 'sig'): AsymmetricKeyRow {
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    if (purpose !== undefined && purposeOf(r.type) !== purpose)
      throw new KbError('INVALID_ARGUMENT', `${r.type} keys cannot be used for this operation`);
    if (r.state !== 'enabled') throw new KbError('DISABLED', 'key version');
    return r;
  }

  /**
   * Versions that may verify / decapsulate / open: an explicit one (at least minDec), or the
   * newest enabled ones (at most keys.maxVerifyVersions: the cost of a call must not grow with
   * the number of versions).
   */
  openers(t: TenantRow, rows: AsymmetricKeyRow[], version: number | undefined, purpose: 'kem' | 'sig') {
    const minDec = this.policy(t, (rows[0] as AsymmetricKeyRow).keyId).minDec;
    if (version !== undefined) {
      const r = this.version(rows, version, purpose);
      if (r.version < minDec) throw new KbError('VERSION_BELOW_MINIMUM');
      return [r];
    }
    const enabled = rows.filter((r) => r.state === 'enabled' && r.version >= minDec);
    return enabled.slice(-this.#limits.maxVerifyVersions).reverse();
  }

  /**
   * The primary for a signature / encapsulation / seal, rotated first when its period is over or
   * its usage limit reached (as symmetric keys do on encrypt); below minEnc is refused.
   */
  async primaryForUse(ref: Api.KeyOwner, keyId: string, purpose: 'kem' | 'sig') {
    const { t, customer } = this.owner(ref);
    let rows = await this.rows(t, keyId, customer);
    const p = this.policy(t, keyId);
    const last = rows[rows.length - 1] as AsymmetricKeyRow;
    if (purposeOf(last.type) === purpose && this.#due(t, last, p, this.#h.d.now())) {
      await this.#rotateIfPrimary(ref, keyId, last.version);
      rows = await this.rows(t, keyId, customer);
    }
    const row = this.version(rows, undefined, purpose);
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
    const policy = mergePolicy(DEFAULT_ASYMMETRIC_POLICY, opts.policy as Partial<KeyPolicy> | undefined, 1);
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t } = this.owner(ref);
      if (AsymmetricKeyStore.versions(this.#h.store(t), id).length > 0)
        throw new KbError('ALREADY_EXISTS', 'key');
      await this.#addVersion(ref, id, 1, type, hsmEcdsa, policy);
      const o = this.owner(ref);
      return this.info(o.t, await this.rows(o.t, id, o.customer));
    });
  }

  async rotateKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.owner(ref);
      const rows = await this.rows(t, keyId, customer);
      const last = rows[rows.length - 1] as AsymmetricKeyRow;
      await this.#addVersion(ref, last.keyId, last.version + 1, last.type, last.meta.hsmLabel !== undefined);
      return this.info(t, await this.rows(this.owner(ref).t, keyId, customer));
    });
  }

  /**
   * Store an imported key (key-import.ts, checked there) like a generated one: a new key (version
   * 1), or a new primary version of the owner's key of the same type. `material` is consumed.
   */
  async importVersion(
    ref: Api.KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    material: GeneratedKey,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      try {
        const { t, customer } = this.owner(ref);
        const existing = AsymmetricKeyStore.versions(this.#h.store(t), keyId);
        const last = existing[existing.length - 1];
        if (last !== undefined && last.customer !== customer) throw new KbError('ALREADY_EXISTS', 'key');
        if (last !== undefined && last.type !== type)
          throw new KbError('FAILED_PRECONDITION', `key exists with another algorithm (${last.type})`);
        if (last !== undefined) await this.rows(t, keyId, customer); // its rows must be intact
        const version = (last?.version ?? 0) + 1;
        const policy = last === undefined ? { ...DEFAULT_ASYMMETRIC_POLICY } : undefined;
        await this.#addVersion(ref, keyId, version, type, false, policy, material);
        const o = this.owner(ref);
        return this.info(o.t, await this.rows(o.t, keyId, o.customer));
      } finally {
        material.secret.destroy();
      }
    });
  }

  /** Rotate only if `fromVersion` is still the primary (concurrent callers share one rotation). */
  async #rotateIfPrimary(ref: Api.KeyOwner, keyId: string, fromVersion: number): Promise<void> {
    await this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.owner(ref);
      const rows = await this.rows(t, keyId, customer);
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
    given?: GeneratedKey,
  ): Promise<void> {
    if (this.shredding.has(tenantKey(ref.org, ref.tenant))) throw new KbError('NOT_FOUND', 'tenant');
    if (ref.customer !== undefined && this.shredding.has(customerShredKey(ref, ref.customer)))
      throw new KbError('NOT_FOUND', 'customer');
    const inHsm = hsmEcdsa || type === 'ecdsa-p256';
    checkNewVersion(this.#h.store(this.owner(ref).t), this.#limits, keyId, version, inHsm);
    const g = given ?? (await generateKey(this.#rt, this.#hsm, type, inHsm));
    try {
      const { t, customer } = this.owner(ref);
      const c = customer === '' ? undefined : this.#h.customerRow(t, customer);
      const wrapVersion = c === undefined ? t.primaryTek : c.primaryCek;
      const kek =
        c === undefined
          ? await this.#h.tekCopy(t.org, t.tenant, wrapVersion)
          : await this.#h.cekCopy(t, customer, wrapVersion);
      try {
        const row: AsymmetricKeyRow = {
          keyId,
          version,
          type,
          customer,
          tekVersion: c === undefined ? wrapVersion : 0,
          cekVersion: c === undefined ? 0 : wrapVersion,
          uses: 0,
          wrapped: new Uint8Array(0),
          publicKey: g.publicKey,
          state: 'enabled',
          createdAt: this.#h.d.now().toISOString(),
          meta: g.hsmLabel !== undefined ? { hsmLabel: g.hsmLabel } : {},
        };
        const s = this.#h.store(this.owner(ref).t);
        // 0x13: the public key, metadata and key policy are bound to the wrapped private key (M5).
        const wrapped = wrapRowSecret(
          kek,
          t,
          row,
          policy ?? AsymmetricKeyStore.policy(s, keyId),
          g.secret.expose(),
        );
        s.tx(() => {
          AsymmetricKeyStore.insert(s, { ...row, wrapped });
          if (policy !== undefined) AsymmetricKeyStore.setPolicy(s, keyId, policy);
        });
      } finally {
        kek.fill(0);
      }
    } catch (err) {
      // A key that never made it into the file must not linger in the token.
      if (g.hsmLabel !== undefined) await this.destroyHsmKey(g.hsmLabel).catch(() => undefined);
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
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.owner(ref);
      const rows = await this.rows(t, keyId, customer);
      const primary = (rows[rows.length - 1] as AsymmetricKeyRow).version;
      const current = this.policy(t, keyId);
      const merged = mergePolicy(current, policy as Partial<KeyPolicy>, primary);
      // Every version is bound to the policy: sealed again with it, in one transaction.
      await this.#verifier.rebindPolicy(t, rows, current, merged);
      return this.info(t, await this.rows(t, keyId, customer));
    });
  }

  async setKeyVersionEnabled(
    ref: Api.KeyOwner,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const { t, customer } = this.owner(ref);
      const rows = await this.rows(t, keyId, customer);
      const r = rows.find((x) => x.version === version);
      if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
      if (!enabled && r.version === (rows[rows.length - 1] as AsymmetricKeyRow).version)
        throw new KbError('FAILED_PRECONDITION', 'the primary version cannot be disabled; rotate first');
      const state = enabled ? 'enabled' : 'disabled';
      // The state is part of the row's binding: the wrap is sealed again with it.
      if (r.state !== state) await this.#verifier.rebindState(t, r, this.policy(t, keyId), state);
      if (!enabled) this.#evict(t, r.keyId, version);
      return this.info(t, await this.rows(t, keyId, customer));
    });
  }

  async listKeys(ref: Api.KeyOwner): Promise<readonly Api.AsymmetricKeyInfo[]> {
    const { t, customer } = this.owner(ref);
    const byId = new Map<string, AsymmetricKeyRow[]>();
    const mine = AsymmetricKeyStore.all(this.#h.store(t)).filter((r) => r.customer === customer);
    await this.verifyRows(t, mine);
    for (const r of mine) {
      const list = byId.get(r.keyId) ?? [];
      list.push(r);
      byId.set(r.keyId, list);
    }
    return [...byId.values()].map((rows) => this.info(t, rows));
  }

  async describeKey(ref: Api.KeyOwner, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    const { t, customer } = this.owner(ref);
    return this.info(t, await this.rows(t, keyId, customer));
  }

  /**
   * Scheduled rotation (Lifecycle.rotateDueKeys): a new primary for every key whose primary is
   * older than its rotation period. One failure does not stop the rest.
   */
  async rotateDueKeys(now: Date, org?: string): Promise<{ rotated: number; failed: number }> {
    let rotated = 0;
    let failed = 0;
    for (const t of this.#h.d.registry.listActiveTenants()) {
      if (org !== undefined && t.org !== org) continue;
      // A disabled tenant or org makes no keys; its due keys rotate on the first scan after.
      if (!t.enabled || this.#h.orgRow(t.org)?.enabled !== true) continue;
      try {
        for (const p of AsymmetricKeyStore.periodic(this.#h.store(t))) {
          const rows = AsymmetricKeyStore.versions(this.#h.store(t), p.keyId);
          const last = rows[rows.length - 1];
          if (last === undefined || Date.parse(last.createdAt) + p.rotationPeriodS * 1000 > now.getTime())
            continue;
          if (last.customer !== '' && this.#h.customerRow(t, last.customer)?.enabled !== true) continue;
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

  async destroyHsmKey(label: string): Promise<void> {
    const ref = await this.#hsm.findKey(label, 'signing');
    if (ref !== undefined) await this.#hsm.destroyKey(ref);
  }
}
