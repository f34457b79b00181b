/**
 * Lifecycle of orgs, tenants and customers: create, enable/disable, rotate (on demand, on
 * schedule, on usage), key policy and version state. Writes to one tenant run under its lock.
 */
import { randomBytes } from 'node:crypto';
import { KbError } from '../errors.ts';
import type { CustomerId, KeyVersion, OrgId, TenantId } from '../ids.ts';
import type { TenantRow } from '../store/registry-store.ts';
import { StaleOekError } from '../store/registry-store.ts';
import { deriveTek, wrapCek } from '../wire/wrapped-key-v1.ts';
import type { Hierarchy } from './hierarchy.ts';
import { tenantKey } from './hierarchy.ts';
import type { CustomerInfo, KeyInfo, KeyPolicy, OrgInfo, TenantInfo } from './key-broker-api.ts';
import type { KeyBrokerLogger } from './key-broker-options.ts';
import {
  customerInfo,
  customerKeyInfo,
  defaultPolicy,
  mergePolicy,
  orgInfo,
  tenantInfo,
  tenantKeyInfo,
} from './key-info.ts';
import type { KeyedMutex } from './keyed-mutex.ts';
import type { ShredEpochRunner } from './shred-epoch.ts';
import type { UsageCounter } from './usage-counter.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';

type ScheduledRotation = (now: Date, org?: OrgId) => Promise<{ rotated: number; failed: number }>;
/** Further rotation scans of a broker (its asymmetric keys), keyed by the broker's Hierarchy. */
const scheduledRotations = new WeakMap<Hierarchy, ScheduledRotation[]>();

/** Run `fn` in every rotateDueKeys of the Lifecycle built on `h`, after the hierarchy's own keys. */
export function addScheduledRotation(h: Hierarchy, fn: ScheduledRotation): void {
  scheduledRotations.set(h, [...(scheduledRotations.get(h) ?? []), fn]);
}

export class Lifecycle {
  readonly #h: Hierarchy;
  readonly #tenantLock: KeyedMutex;
  readonly #orgLock: KeyedMutex;
  readonly #epochs: ShredEpochRunner;
  readonly #usage: UsageCounter;
  readonly #period: number;
  readonly #log: KeyBrokerLogger;

  constructor(
    h: Hierarchy,
    tenantLock: KeyedMutex,
    orgLock: KeyedMutex,
    epochs: ShredEpochRunner,
    usage: UsageCounter,
    period: number,
    log: KeyBrokerLogger,
  ) {
    this.#h = h;
    this.#tenantLock = tenantLock;
    this.#orgLock = orgLock;
    this.#epochs = epochs;
    this.#usage = usage;
    this.#period = period;
    this.#log = log;
  }

  get #reg() {
    return this.#h.d.registry;
  }
  #now(): string {
    return this.#h.d.now().toISOString();
  }

  // --- orgs ---
  async createOrg(org: OrgId): Promise<OrgInfo> {
    return this.#orgLock.run(`org:${org}`, async () => {
      if (this.#reg.getOrg(org)) throw new KbError('ALREADY_EXISTS', 'org');
      const label = `kb-oek-${org}-v1-${randomBytes(4).toString('hex')}`;
      const ref = await this.#h.d.hsm.generateRootKey(label);
      const now = this.#now();
      try {
        this.#reg.insertOrg(
          { org, enabled: true, createdAt: now, primaryOek: 1, ...defaultPolicy(this.#period) },
          { org, version: 1, hsmLabel: label, state: 'enabled', createdAt: now, destroyedAt: null },
        );
      } catch (err) {
        await this.#h.d.hsm.destroyKey(ref);
        throw err;
      }
      return this.describeOrg(org);
    });
  }
  describeOrg(org: string): OrgInfo {
    const o = this.#reg.getOrg(org);
    if (!o) throw new KbError('NOT_FOUND', 'org');
    return orgInfo(o, this.#reg.listOeks(org));
  }
  setOrgEnabled(org: string, enabled: boolean): OrgInfo {
    if (!this.#reg.getOrg(org)) throw new KbError('NOT_FOUND', 'org');
    this.#reg.setOrgEnabled(org, enabled);
    this.#h.forgetOrg(org);
    return this.describeOrg(org);
  }
  async rotateOrgKey(org: string): Promise<OrgInfo> {
    if (!this.#reg.getOrg(org)) throw new KbError('NOT_FOUND', 'org');
    await this.#epochs.run(org, false);
    this.#h.forgetOrg(org);
    return this.describeOrg(org);
  }

  // --- tenants ---
  async createTenant(
    org: OrgId,
    tenant: TenantId,
    policy: Partial<KeyPolicy> | undefined,
  ): Promise<TenantInfo> {
    const o = this.#h.orgRow(org);
    if (!o) throw new KbError('NOT_FOUND', 'org');
    if (!o.enabled) throw new KbError('DISABLED', 'org');
    const p = mergePolicy(defaultPolicy(this.#period), policy, 1);
    return this.#tenantLock.run(tenantKey(org, tenant), async () => {
      if (this.#reg.getTenant(org, tenant)) throw new KbError('ALREADY_EXISTS', 'tenant');
      for (let attempt = 0; ; attempt++) {
        const fileName = `tenants/${org}/${tenant}.${randomBytes(4).toString('hex')}.db`;
        const raw = randomBytes(32);
        const cek = randomBytes(32);
        try {
          const { wrapped, oekVersion } = await this.#h.wrapTekRaw(org, raw);
          const tek = deriveTek(raw, org, tenant, 1);
          const now = this.#now();
          // The tenant file first, the registry row last: the row is the acknowledgement, and a
          // file without a row (crash in between) is never referenced.
          const store = this.#h.d.pool.get(fileName, true);
          const cid = { org, tenant, customer: DEFAULT_CUSTOMER, cekVersion: 1, tekVersion: 1 };
          store.insertCustomer(
            {
              customer: DEFAULT_CUSTOMER,
              enabled: true,
              state: 'active',
              createdAt: now,
              primaryCek: 1,
              ...defaultPolicy(p.rotationPeriodS),
              usageLimit: 0,
            },
            {
              customer: DEFAULT_CUSTOMER,
              version: 1,
              tekVersion: 1,
              wrapped: wrapCek(tek, cid, cek),
              state: 'enabled',
              createdAt: now,
              uses: 0,
            },
          );
          tek.fill(0);
          try {
            this.#reg.insertTenant(
              { org, tenant, enabled: true, state: 'active', createdAt: now, primaryTek: 1, fileName, ...p },
              { org, tenant, version: 1, oekVersion, wrapped, state: 'enabled', createdAt: now, uses: 1 },
            );
          } catch (err) {
            this.#h.d.pool.deleteFiles(fileName);
            // CreateTenants takes no per-name lock: if it committed this name meanwhile, the
            // UNIQUE constraint failed here, and the caller gets what it would have got earlier.
            if (!(err instanceof StaleOekError) && this.#reg.getTenant(org, tenant))
              throw new KbError('ALREADY_EXISTS', 'tenant');
            throw err;
          }
          this.#h.forgetTenant(org, tenant);
          const t = this.#h.activeTenant(org, tenant);
          return tenantInfo(t, this.#reg.listTeks(org, tenant));
        } catch (err) {
          if (err instanceof StaleOekError && attempt < 5) continue;
          throw err;
        } finally {
          raw.fill(0);
          cek.fill(0);
        }
      }
    });
  }
  setTenantEnabled(t: TenantRow, enabled: boolean): TenantInfo {
    this.#reg.setTenantEnabled(t.org, t.tenant, enabled);
    this.#h.forgetTenant(t.org, t.tenant);
    const n = this.#h.activeTenant(t.org, t.tenant);
    return tenantInfo(n, this.#reg.listTeks(n.org, n.tenant));
  }
  async rotateTenantKey(t0: TenantRow): Promise<TenantInfo> {
    return this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      await this.#h.rotateTek(t);
      const n = this.#h.activeTenant(t.org, t.tenant);
      return tenantInfo(n, this.#reg.listTeks(n.org, n.tenant));
    });
  }

  // --- customers ---
  async createCustomer(
    t0: TenantRow,
    customer: CustomerId,
    policy: Partial<KeyPolicy> | undefined,
  ): Promise<CustomerInfo> {
    return this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      if (!t.enabled) throw new KbError('DISABLED', 'tenant');
      if (this.#h.store(t).getCustomer(customer)) throw new KbError('ALREADY_EXISTS', 'customer');
      // Customers inherit the tenant's rotation period; their usage limit is their own.
      const p = mergePolicy(defaultPolicy(t.rotationPeriodS), policy, 1);
      const { tekVersion, wrapped } = await this.#h.newWrappedCek(t, customer, 1);
      const now = this.#now();
      this.#h
        .store(t)
        .insertCustomer(
          { customer, enabled: true, state: 'active', createdAt: now, primaryCek: 1, ...p },
          { customer, version: 1, tekVersion, wrapped, state: 'enabled', createdAt: now, uses: 0 },
        );
      this.#h.forgetCustomer(t, customer);
      await this.#countTekUse(t, tekVersion);
      return this.describeCustomer(t, customer);
    });
  }
  describeCustomer(t: TenantRow, customer: string): CustomerInfo {
    const c = this.#h.store(t).getCustomer(customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    const ceks = this.#h.store(t).listCeks(customer);
    return customerInfo(t, c, ceks, (v) => this.#usage.pending(t.org, t.tenant, customer, v));
  }
  async setCustomerEnabled(t: TenantRow, customer: string, enabled: boolean): Promise<CustomerInfo> {
    return this.#tenantLock.run(tenantKey(t.org, t.tenant), async () => {
      this.describeCustomer(t, customer);
      this.#h.store(t).setCustomerEnabled(customer, enabled);
      this.#h.forgetCustomer(t, customer);
      return this.describeCustomer(t, customer);
    });
  }
  async rotateCustomerKey(t0: TenantRow, customer: string): Promise<CustomerInfo> {
    return this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      await this.#rotateCek(t, customer);
      return this.describeCustomer(t, customer);
    });
  }
  /** Usage-limit rotation: rotate only if `fromVersion` is still the primary (concurrent callers share one). */
  async rotateCekIfPrimary(t0: TenantRow, customer: string, fromVersion: number): Promise<void> {
    await this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      const c = this.#h.customerRow(t, customer);
      if (c && c.primaryCek === fromVersion) await this.#rotateCek(t, customer);
    });
  }
  async #rotateCek(t: TenantRow, customer: string): Promise<number> {
    const s = this.#h.store(t);
    const c = s.getCustomer(customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    const next = s.listCeks(customer).reduce((m, r) => Math.max(m, r.version), 0) + 1;
    const { tekVersion, wrapped } = await this.#h.newWrappedCek(t, customer, next);
    s.addPrimaryCek({
      customer,
      version: next,
      tekVersion,
      wrapped,
      state: 'enabled',
      createdAt: this.#now(),
      uses: 0,
    });
    this.#h.forgetCustomer(t, customer);
    await this.#countTekUse(t, tekVersion);
    return next;
  }

  /**
   * A TEK's uses are the CEK versions wrapped under it when created (rewraps by a TEK rotation do
   * not count); its usage limit rotates the TEK. Caller holds the tenant lock.
   */
  async #countTekUse(t: TenantRow, tekVersion: number): Promise<void> {
    this.#reg.addTekUses([{ org: t.org, tenant: t.tenant, version: tekVersion, n: 1 }]);
    if (t.usageLimit <= 0 || tekVersion !== t.primaryTek) return;
    const uses = this.#reg.getTek(t.org, t.tenant, tekVersion)?.uses ?? 0;
    if (uses >= t.usageLimit) await this.#h.rotateTek(t);
  }

  // --- policy and version state ---
  async setKeyPolicy(
    t0: TenantRow,
    customer: CustomerId | undefined,
    policy: Partial<KeyPolicy>,
  ): Promise<KeyInfo> {
    return this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      if (customer === undefined) {
        this.#reg.setTenantPolicy(t.org, t.tenant, mergePolicy(t, policy, t.primaryTek));
        this.#h.forgetTenant(t.org, t.tenant);
        const n = this.#h.activeTenant(t.org, t.tenant);
        return tenantKeyInfo(n, this.#reg.listTeks(n.org, n.tenant));
      }
      const c = this.#h.store(t).getCustomer(customer);
      if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
      this.#h.store(t).setCustomerPolicy(customer, mergePolicy(c, policy, c.primaryCek));
      this.#h.forgetCustomer(t, customer);
      return this.describeCustomer(t, customer).key;
    });
  }
  async setKeyVersionEnabled(
    t0: TenantRow,
    customer: CustomerId | undefined,
    version: KeyVersion,
    enabled: boolean,
  ): Promise<KeyInfo> {
    return this.#tenantLock.run(tenantKey(t0.org, t0.tenant), async () => {
      const t = this.#h.activeTenant(t0.org, t0.tenant);
      if (customer === undefined) {
        if (!this.#reg.getTek(t.org, t.tenant, version)) throw new KbError('NOT_FOUND', 'key version');
        if (!enabled && version === t.primaryTek)
          throw new KbError('FAILED_PRECONDITION', 'the primary version cannot be disabled');
        this.#reg.setTekState(t.org, t.tenant, version, enabled ? 'enabled' : 'disabled');
        return tenantKeyInfo(t, this.#reg.listTeks(t.org, t.tenant));
      }
      const s = this.#h.store(t);
      const c = s.getCustomer(customer);
      if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
      if (!s.getCek(customer, version)) throw new KbError('NOT_FOUND', 'key version');
      if (!enabled && version === c.primaryCek)
        throw new KbError('FAILED_PRECONDITION', 'the primary version cannot be disabled');
      s.setCekState(customer, version, enabled ? 'enabled' : 'disabled');
      this.#h.forgetCustomer(t, customer);
      return customerKeyInfo(c, s.listCeks(customer), (v) =>
        this.#usage.pending(t.org, t.tenant, customer, v),
      );
    });
  }

  /**
   * Rotate every key whose primary is older than its period (of `org` only, when given: an org's
   * operator rotates its own keys); one failure does not stop the rest.
   */
  async rotateDueKeys(now: Date, org?: OrgId): Promise<{ rotated: number; failed: number }> {
    let rotated = 0;
    let failed = 0;
    const due = (createdAt: string, periodS: number): boolean =>
      periodS > 0 && Date.parse(createdAt) + periodS * 1000 <= now.getTime();
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
        rotated++;
      } catch (err) {
        failed++;
        this.#log.warn(
          { what, err: err instanceof Error ? err.message : String(err) },
          'scheduled rotation failed',
        );
      }
    };
    for (const o of this.#reg.listOrgs()) {
      if (org !== undefined && o.org !== org) continue;
      const primary = this.#reg.getOek(o.org, o.primaryOek);
      if (o.enabled && primary && due(primary.createdAt, o.rotationPeriodS))
        await attempt(`org ${o.org}`, () => this.rotateOrgKey(o.org));
    }
    for (const t of this.#reg.listActiveTenants()) {
      if (org !== undefined && t.org !== org) continue;
      const tek = this.#reg.getTek(t.org, t.tenant, t.primaryTek);
      if (tek && due(tek.createdAt, t.rotationPeriodS))
        await attempt(`tenant ${t.org}/${t.tenant}`, () => this.rotateTenantKey(t));
      let customers;
      try {
        customers = this.#h.store(t).listCustomers();
      } catch (err) {
        failed++;
        this.#log.warn(
          { tenant: t.tenant, err: err instanceof Error ? err.message : String(err) },
          'scheduled rotation: tenant file',
        );
        continue;
      }
      for (const c of customers) {
        if (c.state !== 'active') continue;
        const cek = this.#h.store(t).getCek(c.customer, c.primaryCek);
        if (cek && due(cek.createdAt, c.rotationPeriodS)) {
          await attempt(`customer ${t.org}/${t.tenant}/${c.customer}`, () =>
            this.rotateCustomerKey(t, c.customer),
          );
        }
      }
    }
    for (const fn of scheduledRotations.get(this.#h) ?? []) {
      try {
        const r = await fn(now, org);
        rotated += r.rotated;
        failed += r.failed;
      } catch (err) {
        failed++;
        this.#log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'scheduled rotation failed',
        );
      }
    }
    return { rotated, failed };
  }
}
