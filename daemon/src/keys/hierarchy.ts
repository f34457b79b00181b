/**
 * The key hierarchy's moving parts below the API: stores, caches, metadata, and the primitives
 * that load, create and rewrap keys. OEK (HSM) -> TEK (registry, HSM-wrapped, identity-bound by
 * HKDF) -> CEK (tenant file, AES-GCM under the TEK with an identity AAD) -> DEK (per message).
 */
import { randomBytes } from 'node:crypto';
import { decryptionFailed, KbError } from '../errors.ts';
import type { Hsm, HsmKeyRef } from '../hsm/hsm.ts';
import type { PolicyRow } from '../store/registry-rows.ts';
import type { OrgRow, RegistryStore, TenantRow } from '../store/registry-store.ts';
import { StaleOekError } from '../store/registry-store.ts';
import type { CustomerRow } from '../store/tenant-store.ts';
import type { TenantStore } from '../store/tenant-store.ts';
import type { TenantStorePool } from '../store/tenant-store-pool.ts';
import type { SecretBytes } from '../util/secret-bytes.ts';
import { deriveTek, frameWrappedTek, unframeWrappedTek, unwrapCek, wrapCek } from '../wire/wrapped-key-v1.ts';
import { rewrapRowUnderTek } from './asymmetric-key-binding.ts';
import { AsymmetricKeyStore } from './asymmetric-key-store.ts';
import type { KeyCache } from './key-cache.ts';
import { isShreddedWhileLoading } from './key-cache.ts';
import { LruMap } from './lru-map.ts';

export interface HierarchyDeps {
  readonly hsm: Hsm;
  readonly registry: RegistryStore;
  readonly pool: TenantStorePool;
  readonly cache: KeyCache;
  readonly metaEntries: number;
  readonly now: () => Date;
}

/** Key of an entity in caches and locks. Names cannot contain '/', so prefixes never collide. */
export const tenantKey = (org: string, tenant: string): string => `${org}/${tenant}`;
const tekCacheKey = (org: string, tenant: string, v: number): string => `t/${org}/${tenant}/${v}`;
const cekCacheKey = (org: string, tenant: string, customer: string, v: number): string =>
  `c/${org}/${tenant}/${customer}/${v}`;
/** Shred scopes of the key cache (see KeyCache.bump): a tenant, its TEKs, one customer. */
const tenantScope = (org: string, tenant: string): string => `${org}/${tenant}`;
const tekScope = (org: string, tenant: string): string => `${org}/${tenant}#tek`;
const customerScope = (org: string, tenant: string, customer: string): string =>
  `${org}/${tenant}/${customer}`;

interface CustomerMeta {
  readonly row: CustomerRow;
  disabled?: ReadonlySet<number>;
}
const MAX_CUSTOMERS_CACHED_PER_TENANT = 10_000;

export class Hierarchy {
  readonly d: HierarchyDeps;
  readonly #tenants: LruMap<string, TenantRow>;
  /** Per tenant: its customers' rows and disabled CEK versions (forgotten with the tenant). */
  readonly #customers: LruMap<string, Map<string, CustomerMeta>>;
  readonly #orgs = new Map<string, OrgRow>();
  readonly #oekRefs = new Map<string, HsmKeyRef>();
  /** Tenants ("org/tenant") and customers ("org/tenant/customer") with a recorded destroy. */
  readonly #shredPending = new Set<string>();

  constructor(d: HierarchyDeps) {
    this.d = d;
    this.#tenants = new LruMap(d.metaEntries);
    this.#customers = new LruMap(d.metaEntries);
  }

  /** An org row (cached; orgs are few). */
  orgRow(org: string): OrgRow | undefined {
    let o = this.#orgs.get(org);
    if (!o) {
      o = this.d.registry.getOrg(org);
      if (o) this.#orgs.set(org, o);
    }
    return o;
  }
  forgetOrg(org: string): void {
    this.#orgs.delete(org);
  }
  /** Drop every cached row and OEK handle (serve --workers: the backstop of a missed invalidation). */
  forgetAll(): void {
    this.#orgs.clear();
    this.#oekRefs.clear();
    this.#tenants.clear();
    this.#customers.clear();
  }

  // --- destroys recorded but not yet shredded (shred-intent-runner.ts) ---
  markShredPending(org: string, tenant: string, customer: string | null): void {
    this.#shredPending.add(customer === null ? tenantKey(org, tenant) : customerScope(org, tenant, customer));
  }
  clearShredPending(org: string, tenant: string, customer: string | null): void {
    this.#shredPending.delete(
      customer === null ? tenantKey(org, tenant) : customerScope(org, tenant, customer),
    );
  }
  /** Whether a destroy of the tenant (or of this customer) is recorded and unfinished. */
  shredPending(org: string, tenant: string, customer?: string): boolean {
    if (this.#shredPending.size === 0) return false;
    if (this.#shredPending.has(tenantKey(org, tenant))) return true;
    return customer !== undefined && this.#shredPending.has(customerScope(org, tenant, customer));
  }

  // --- metadata (cached; every write path calls the matching forget*) ---
  tenantRow(org: string, tenant: string): TenantRow | undefined {
    const k = tenantKey(org, tenant);
    let t = this.#tenants.get(k);
    if (!t) {
      t = this.d.registry.getTenant(org, tenant);
      if (t) this.#tenants.set(k, t);
    }
    return t;
  }
  /** An active tenant or NOT_FOUND (destroyed tenants are not found, whatever the caller knew). */
  activeTenant(org: string, tenant: string): TenantRow {
    const t = this.tenantRow(org, tenant);
    if (!t || t.state !== 'active') throw new KbError('NOT_FOUND', 'tenant');
    return t;
  }
  forgetTenant(org: string, tenant: string): void {
    this.#tenants.delete(tenantKey(org, tenant));
    this.#customers.delete(tenantKey(org, tenant));
  }
  store(t: TenantRow): TenantStore {
    return this.d.pool.get(t.fileName);
  }
  #customerMeta(t: TenantRow, customer: string): CustomerMeta | undefined {
    const tk = tenantKey(t.org, t.tenant);
    let m = this.#customers.get(tk);
    let c = m?.get(customer);
    if (!c) {
      const row = this.store(t).getCustomer(customer);
      if (!row) return undefined;
      c = { row };
      if (!m || m.size >= MAX_CUSTOMERS_CACHED_PER_TENANT) {
        m = new Map();
        this.#customers.set(tk, m);
      }
      m.set(customer, c);
    }
    return c;
  }
  customerRow(t: TenantRow, customer: string): CustomerRow | undefined {
    return this.#customerMeta(t, customer)?.row;
  }
  /** CEK versions of a customer that are disabled (cached with the customer row). */
  disabledCeks(t: TenantRow, customer: string): ReadonlySet<number> {
    const c = this.#customerMeta(t, customer);
    if (!c) return new Set();
    c.disabled ??= new Set(
      this.store(t)
        .listCeks(customer)
        .filter((r) => r.state === 'disabled')
        .map((r) => r.version),
    );
    return c.disabled;
  }
  forgetCustomer(t: TenantRow, customer: string): void {
    this.#customers.get(tenantKey(t.org, t.tenant))?.delete(customer);
  }

  // --- OEK ---
  async oekRef(org: string, version: number): Promise<HsmKeyRef> {
    const k = `${org}/${version}`;
    const hit = this.#oekRefs.get(k);
    if (hit) return hit;
    const row = this.d.registry.getOek(org, version);
    if (!row || row.state === 'destroyed') throw decryptionFailed();
    const ref = await this.d.hsm.findKey(row.hsmLabel, 'root');
    if (!ref)
      throw new KbError('INTERNAL', undefined, { detail: `OEK ${row.hsmLabel} missing from the HSM` });
    this.#oekRefs.set(k, ref);
    return ref;
  }
  forgetOek(org: string, version: number): void {
    this.#oekRefs.delete(`${org}/${version}`);
  }

  // --- TEK ---
  /** Wrap fresh TEK bytes under the org's primary OEK; returns the framed blob and the OEK version. */
  async wrapTekRaw(org: string, raw: Uint8Array): Promise<{ wrapped: Uint8Array; oekVersion: number }> {
    const o = this.d.registry.getOrg(org);
    if (!o) throw new KbError('NOT_FOUND', 'org');
    const ref = await this.oekRef(org, o.primaryOek);
    const out = await this.d.hsm.wrapKey(ref, raw);
    return { wrapped: frameWrappedTek(this.d.hsm.capabilities.wrap, out), oekVersion: o.primaryOek };
  }

  /** Unwrap + derive one TEK version from its registry row (re-read when an epoch moved it meanwhile). */
  async #loadTek(org: string, tenant: string, version: number): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      const row = this.d.registry.getTek(org, tenant, version);
      if (!row) throw decryptionFailed();
      try {
        const ref = await this.oekRef(org, row.oekVersion);
        const raw = await this.d.hsm.unwrapKey(
          ref,
          unframeWrappedTek(this.d.hsm.capabilities.wrap, row.wrapped),
        );
        try {
          return deriveTek(raw, org, tenant, version);
        } finally {
          raw.fill(0);
        }
      } catch (err) {
        const again = this.d.registry.getTek(org, tenant, version);
        if (attempt < 3 && again && again.oekVersion !== row.oekVersion) continue;
        throw err;
      }
    }
  }

  /** The effective TEK of a version; owned by the cache (use synchronously). */
  async tek(org: string, tenant: string, version: number): Promise<SecretBytes> {
    const k = tekCacheKey(org, tenant, version);
    return (
      this.d.cache.peek(k) ??
      this.d.cache.get(
        k,
        () => this.#loadTek(org, tenant, version),
        () => !this.d.hsm.health().ok,
        [tenantScope(org, tenant), tekScope(org, tenant)],
      )
    );
  }

  /**
   * A copy of a TEK the caller owns (and zeroes). Cached keys may be zeroed by an eviction while
   * a caller awaits, so nothing keeps a cache-owned buffer across an await.
   */
  async tekCopy(org: string, tenant: string, version: number): Promise<Uint8Array> {
    for (let i = 0; i < 3; i++) {
      const s = await this.tek(org, tenant, version).catch((err: unknown) => {
        // A shred refused the insert: the next attempt re-reads the rows (gone or rewrapped).
        if (i < 2 && isShreddedWhileLoading(err)) return undefined;
        throw err;
      });
      if (s && !s.destroyed) return Uint8Array.from(s.expose());
    }
    // The cache is thrashing (more keys in use than it holds): load a private copy, uncached.
    return this.#loadTek(org, tenant, version);
  }

  /** Create TEK version `version` under the primary OEK; retries if an epoch switched the OEK. */
  async addTekVersion(org: string, tenant: string, version: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const raw = randomBytes(32);
      try {
        const { wrapped, oekVersion } = await this.wrapTekRaw(org, raw);
        this.d.registry.insertTek({
          org,
          tenant,
          version,
          oekVersion,
          wrapped,
          state: 'enabled',
          createdAt: this.d.now().toISOString(),
          uses: 0,
        });
        return;
      } catch (err) {
        if (err instanceof StaleOekError && attempt < 5) continue;
        throw err;
      } finally {
        raw.fill(0);
      }
    }
  }

  /**
   * Rotate a tenant's TEK: new version under the primary OEK, every CEK and tenant key rewrapped
   * under it in one tenant-file transaction, then the primary moves. Old TEK rows are kept (they
   * wrap nothing any more); a customer shred deletes them. Caller holds the tenant lock.
   */
  async rotateTek(t: TenantRow): Promise<number> {
    const teks = this.d.registry.listTeks(t.org, t.tenant);
    const next = teks.reduce((m, r) => Math.max(m, r.version), 0) + 1;
    await this.addTekVersion(t.org, t.tenant, next);
    const store = this.store(t);
    const ceks = store.listAllCeks();
    // Customer keys are wrapped under a CEK, not the TEK: a TEK rotation does not touch them.
    const keys = AsymmetricKeyStore.all(store).filter((r) => r.customer === '');
    // Read now: the rows are bound to their key's policy, and the handle may close while we await.
    const policies = new Map(keys.map((r) => [r.keyId, AsymmetricKeyStore.policy(store, r.keyId)]));
    const newTek = await this.tekCopy(t.org, t.tenant, next);
    try {
      const cekOut = [];
      for (const r of ceks) {
        const oldTek = await this.tekCopy(t.org, t.tenant, r.tekVersion);
        const id = { org: t.org, tenant: t.tenant, customer: r.customer, cekVersion: r.version };
        const cek = unwrapCek(oldTek, { ...id, tekVersion: r.tekVersion }, r.wrapped);
        oldTek.fill(0);
        cekOut.push({
          customer: r.customer,
          version: r.version,
          tekVersion: next,
          wrapped: wrapCek(newTek, { ...id, tekVersion: next }, cek),
        });
        cek.fill(0);
      }
      const keyOut = [];
      for (const r of keys) {
        const oldTek = await this.tekCopy(t.org, t.tenant, r.tekVersion);
        try {
          keyOut.push(rewrapRowUnderTek(t, r, policies.get(r.keyId) as PolicyRow, oldTek, newTek, next));
        } finally {
          oldTek.fill(0);
        }
      }
      // Fetched again: the LRU may have closed the handle while we awaited TEKs.
      this.store(t).rewrapAll(cekOut, keyOut);
    } finally {
      newTek.fill(0);
    }
    this.d.registry.setPrimaryTek(t.org, t.tenant, next);
    this.#tenants.delete(tenantKey(t.org, t.tenant));
    return next;
  }

  /** Zero and drop cached TEKs of a tenant (all versions, or those below `below`). */
  evictTeks(org: string, tenant: string, below?: number): void {
    this.d.cache.bump(tekScope(org, tenant));
    if (below === undefined) {
      this.d.cache.evictPrefix(`t/${org}/${tenant}/`);
      return;
    }
    for (let v = 1; v < below; v++) this.d.cache.evict(tekCacheKey(org, tenant, v));
  }

  // --- CEK ---
  async #loadCek(t: TenantRow, customer: string, version: number): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      const row = this.store(t).getCek(customer, version);
      if (!row) throw decryptionFailed();
      try {
        const tek = await this.tekCopy(t.org, t.tenant, row.tekVersion);
        try {
          return unwrapCek(
            tek,
            { org: t.org, tenant: t.tenant, customer, cekVersion: version, tekVersion: row.tekVersion },
            row.wrapped,
          );
        } finally {
          tek.fill(0);
        }
      } catch (err) {
        // A TEK rotation may have rewrapped this CEK (and a customer shred dropped the old TEK).
        const again = this.store(t).getCek(customer, version);
        if (attempt < 3 && again && again.tekVersion !== row.tekVersion) continue;
        throw err;
      }
    }
  }

  /** Cached CEK without awaiting, for the warm path. */
  peekCek(t: TenantRow, customer: string, version: number): SecretBytes | undefined {
    return this.d.cache.peek(cekCacheKey(t.org, t.tenant, customer, version));
  }

  /** A copy of a CEK the caller owns (and zeroes); see tekCopy. */
  async cekCopy(t: TenantRow, customer: string, version: number): Promise<Uint8Array> {
    const hit = this.peekCek(t, customer, version);
    if (hit) return Uint8Array.from(hit.expose());
    for (let i = 0; i < 3; i++) {
      const s = await this.cek(t, customer, version).catch((err: unknown) => {
        if (i < 2 && isShreddedWhileLoading(err)) return undefined;
        throw err;
      });
      if (s && !s.destroyed) return Uint8Array.from(s.expose());
    }
    // See tekCopy: under cache thrash, a private uncached load instead of an internal error.
    return this.#loadCek(t, customer, version);
  }

  async cek(t: TenantRow, customer: string, version: number): Promise<SecretBytes> {
    const k = cekCacheKey(t.org, t.tenant, customer, version);
    return (
      this.d.cache.peek(k) ??
      this.d.cache.get(
        k,
        () => this.#loadCek(t, customer, version),
        () => !this.d.hsm.health().ok,
        [tenantScope(t.org, t.tenant), customerScope(t.org, t.tenant, customer)],
      )
    );
  }

  /** Fresh CEK bytes wrapped under the tenant's primary TEK. */
  async newWrappedCek(
    t: TenantRow,
    customer: string,
    version: number,
  ): Promise<{ tekVersion: number; wrapped: Uint8Array }> {
    const cek = randomBytes(32);
    const tek = await this.tekCopy(t.org, t.tenant, t.primaryTek);
    try {
      const id = { org: t.org, tenant: t.tenant, customer, cekVersion: version, tekVersion: t.primaryTek };
      return { tekVersion: t.primaryTek, wrapped: wrapCek(tek, id, cek) };
    } finally {
      tek.fill(0);
      cek.fill(0);
    }
  }

  evictCustomer(t: TenantRow, customer: string): void {
    this.d.cache.bump(customerScope(t.org, t.tenant, customer));
    this.d.cache.evictPrefix(`c/${t.org}/${t.tenant}/${customer}/`);
    this.forgetCustomer(t, customer);
  }

  evictTenant(org: string, tenant: string): void {
    this.d.cache.bump(tenantScope(org, tenant));
    this.d.cache.evictPrefix(`t/${org}/${tenant}/`);
    this.d.cache.evictPrefix(`c/${org}/${tenant}/`);
    this.forgetTenant(org, tenant);
  }
}
