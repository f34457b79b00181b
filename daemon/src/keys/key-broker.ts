/**
 * KeyBroker: the KeyBrokerApi over the HSM-rooted hierarchy (see hierarchy.ts, data-plane.ts,
 * shredder.ts, shred-epoch.ts and wire/FORMAT.md). Open with `KeyBroker.open(options)`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { KbError, toKbError } from '../errors.ts';
import { customerId, orgId, tenantId } from '../ids.ts';
import type { CustomerId, KeyVersion, OrgId, TenantRef } from '../ids.ts';
import { RegistryStore, StaleOekError } from '../store/registry-store.ts';
import type { TenantRow, ShredRow } from '../store/registry-store.ts';
import { TenantStorePool } from '../store/tenant-store-pool.ts';
import { DataPlane } from './data-plane.ts';
import { GatedHsm } from './gated-hsm.ts';
import { Hierarchy } from './hierarchy.ts';
import type * as Api from './key-broker-api.ts';
import type { KeyBrokerCluster, KeyBrokerLogger, KeyBrokerOptions } from './key-broker-options.ts';
import { KeyCache } from './key-cache.ts';
import { customerInfo, defaultPolicy, orgInfo, tenantInfo } from './key-info.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import { LiveStreams } from './live-streams.ts';
import { purgeScope, purgeShredded } from './shred-purge.ts';
import { publishedKey, ReceiptSigner } from './receipt-signer.ts';
import { ShredEpochRunner } from './shred-epoch.ts';
import { Shredder } from './shredder.ts';
import { ShredIntentRunner } from './shred-intent-runner.ts';
import { UsageCounter } from './usage-counter.ts';
import { BatchRunner } from './batch-runner.ts';
import { createTenantsBulk } from './bulk-tenants.ts';
import { Lifecycle } from './lifecycle.ts';
import { AsymmetricKeys } from './asymmetric-keys.ts';
import { BlindIndexes } from './blind-indexes.ts';
import { SecretStore } from './secret-store.ts';

const NOOP_LOG: KeyBrokerLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** The HSM-rooted key hierarchy as a library: the gRPC layer is a thin wrapper over this. */
export class KeyBroker implements Api.KeyBrokerApi {
  readonly #h: Hierarchy;
  readonly #dp: DataPlane;
  readonly #life: Lifecycle;
  /** Default rotation period of new keys (CreateTenants builds its rows without Lifecycle). */
  readonly #defaultPeriodS: number;
  readonly #shred: Shredder;
  readonly #intents: ShredIntentRunner;
  readonly #signer: ReceiptSigner;
  readonly #auditKeyPem: (() => string | undefined) | undefined;
  readonly #batch: BatchRunner;
  readonly #usage: UsageCounter;
  readonly #cache: KeyCache;
  readonly #log: KeyBrokerLogger;
  /** Tenant asymmetric keys, when the daemon enabled them (options.pqc). */
  readonly asymmetric: AsymmetricKeys | undefined;
  /** Keyed blind indexes (blind-indexes.ts) and the secrets store (secret-store.ts). */
  readonly blindIndexes: BlindIndexes;
  readonly secrets: SecretStore;
  readonly #timers: NodeJS.Timeout[] = [];
  /** Open data-plane streams, aborted by the shred of their tenant or customer. */
  readonly #streams = new LiveStreams();
  #closed = false;
  #resuming = false;
  readonly #cluster: KeyBrokerCluster | undefined;
  #lastHsmError = 0;

  private constructor(o: KeyBrokerOptions, registry: RegistryStore) {
    const clock = o.clock ?? (() => new Date());
    this.#cluster = o.cluster;
    this.#log = o.logger ?? NOOP_LOG;
    this.#cache = new KeyCache({
      ttlMs: o.cache?.ttlMs ?? 5 * 60_000,
      maxEntries: o.cache?.maxEntries ?? 10_000,
      degradedServeMs: o.degradedServeMs ?? 5 * 60_000,
      now: () => clock().getTime(),
    });
    const hsm = new GatedHsm(o.hsm, o.hsmConcurrency ?? 1);
    this.#h = new Hierarchy({
      hsm,
      registry,
      pool: new TenantStorePool(o.dataDir, o.maxOpenTenantFiles ?? 256),
      cache: this.#cache,
      metaEntries: o.metadataCacheEntries ?? 50_000,
      now: clock,
    });
    const tenantLock = new KeyedMutex();
    const orgLock = new KeyedMutex();
    this.#usage = new UsageCounter(this.#h, (err) =>
      this.#log.warn({ err: toKbError(err).detail }, 'usage flush failed'),
    );
    const epochs = new ShredEpochRunner(this.#h, orgLock, o.shredBatchMs ?? 20, (d, m) =>
      this.#log.warn(d, m),
    );
    this.#signer = new ReceiptSigner(hsm, registry);
    this.#auditKeyPem = o.auditCheckpointKeyPem;
    this.#shred = new Shredder(this.#h, tenantLock, epochs, this.#signer, this.#usage, o.auditHead, (s) =>
      this.#purgeShredded(s),
    );
    this.#defaultPeriodS = o.defaultRotationPeriodSeconds ?? defaultPolicy().rotationPeriodS;
    this.#life = new Lifecycle(
      this.#h,
      tenantLock,
      orgLock,
      epochs,
      this.#usage,
      this.#defaultPeriodS,
      this.#log,
    );
    this.#dp = new DataPlane(
      this.#h,
      this.#usage,
      (t, c, v) =>
        this.#life
          .rotateCekIfPrimary(t, c, v)
          .finally(() => this.#cluster?.changed({ org: t.org, tenant: t.tenant, customer: c })),
      this.#streams,
    );
    this.#batch = new BatchRunner();
    this.asymmetric = o.pqc ? new AsymmetricKeys(this.#h, tenantLock, hsm, o.pqc) : undefined;
    this.#intents = new ShredIntentRunner(this.#h, this.#shred, this.asymmetric);
    const serving = (ref: TenantRef) => this.#dp.tenant(ref);
    this.blindIndexes = new BlindIndexes(this.#h, serving, (ref, fn) => this.#data(ref, fn));
    this.secrets = new SecretStore(this.#h, serving, (ref, fn) => this.#data(ref, fn));
  }

  /** Open (creating) the data dir, resume interrupted shreds and epochs, start timers. */
  static async open(o: KeyBrokerOptions): Promise<KeyBroker> {
    mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
    const registry = RegistryStore.open(join(o.dataDir, 'registry.db'));
    const kb = new KeyBroker(o, registry);
    try {
      if (o.cluster === undefined || o.cluster.singletons()) await kb.resumeUnfinished();
    } catch (err) {
      kb.#log.error(
        { err: toKbError(err).detail },
        'resuming shreds failed; they are retried at the next open',
      );
    }
    if (o.logger) await kb.#logBrokerKeys();
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      kb.#timers.push(t);
    };
    every(o.usageFlushMs ?? 1000, () => kb.#usage.flush());
    every(30_000, () => kb.#cache.sweep());
    if (kb.asymmetric) every(30_000, () => kb.asymmetric?.sweep());
    // A shred whose epoch failed (e.g. HSM outage) is retried until it completes.
    every(o.shredRetryMs ?? 60_000, () => {
      if (kb.#closed || kb.#resuming || (!kb.#shred.hasUnfinished && !kb.#intents.hasPending)) return;
      if (o.cluster !== undefined && !o.cluster.singletons()) return;
      kb.#resuming = true;
      kb.resumeUnfinished()
        .catch((err: unknown) => kb.#log.warn({ err: toKbError(err).detail }, 'shred retry failed'))
        .finally(() => (kb.#resuming = false));
    });
    // Several processes: another one's write reaches this one by invalidation; should one be
    // missed, cached rows live at most one key-cache TTL (key bytes of a version never change).
    if (o.cluster !== undefined) every(o.cache?.ttlMs ?? 5 * 60_000, () => kb.#h.forgetAll());
    if (o.rotationScanMs && o.rotationScanMs > 0)
      every(o.rotationScanMs, () => void kb.rotateDueKeys().catch(() => undefined));
    return kb;
  }

  /** Finish recorded destroys, shreds and epochs (at open, by the retry timer, by a new leader). */
  resumeUnfinished(): Promise<void> {
    return this.#exclusive(async () => {
      await this.#intents.resume();
      await this.#shred.resume();
    });
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#cluster === undefined ? fn() : this.#cluster.exclusive(fn);
  }

  /**
   * Another process changed `scope` (rotation, version state, policy, enablement): forget the
   * cached rows, so the next call reads them again. Key bytes of a version never change, so
   * cached keys stay; the shredded ones go through dropShredded.
   */
  invalidate(scope: { org: string; tenant?: string; customer?: string }): void {
    if (this.#closed) return;
    const reg = this.#h.d.registry;
    this.#h.forgetOrg(scope.org);
    for (const k of reg.listOeks(scope.org)) this.#h.forgetOek(scope.org, k.version);
    const tenants =
      scope.tenant !== undefined ? [this.#h.tenantRow(scope.org, scope.tenant)] : reg.listTenants(scope.org);
    for (const t of tenants) {
      if (t === undefined) continue;
      this.#h.forgetTenant(t.org, t.tenant);
      // The asymmetric row cache serves while this generation holds; another process's writes
      // do not move it, so move it here (an open file only: a closed one is read afresh).
      if (this.#h.d.pool.isOpen(t.fileName)) this.#h.store(t).keysChanged();
    }
  }

  /** Another process shredded `scope`: zero its keys here now (before its receipt is signed). */
  async dropShredded(scope: { org: string; tenant: string; customer?: string }): Promise<void> {
    if (this.#closed) return;
    this.invalidate(scope);
    await this.#purgeLocal(scope.org, scope.tenant, scope.customer);
  }

  /** The start log names the keys to pin (receipts, audit checkpoints): one publication channel. */
  async #logBrokerKeys(): Promise<void> {
    try {
      const k = await this.brokerKeys();
      this.#log.info(
        {
          receiptKeySha256: k.receiptKey.sha256,
          auditCheckpointKeySha256: k.auditCheckpointKey?.sha256,
          brokerInstance: k.brokerInstance,
        },
        'broker public keys: pin these fingerprints to verify shred receipts and audit checkpoints',
      );
    } catch (err) {
      this.#log.warn(
        { err: toKbError(err).detail },
        'could not read the receipt key; it is created at the first shred',
      );
    }
  }

  async #guard<T>(fn: () => Promise<T> | T, ref?: TenantRef): Promise<T> {
    if (this.#closed) throw new KbError('SHUTTING_DOWN');
    try {
      return await fn();
    } catch (err) {
      if (ref) this.#dp.throwIfGone(ref);
      if (err instanceof StaleOekError)
        throw new KbError('INTERNAL', undefined, { cause: err, detail: err.message });
      const e = toKbError(err);
      if (e.code === 'HSM_UNAVAILABLE') this.#lastHsmError = this.#h.d.now().getTime();
      if (!e.isUserError) this.#log.error({ code: e.code, detail: e.detail }, 'key broker operation failed');
      throw e;
    }
  }

  /** Data-plane calls: a request whose tenant was destroyed meanwhile fails with NOT_FOUND. */
  #data<T>(ref: TenantRef, fn: () => Promise<T>): Promise<T> {
    return this.#guard(fn, ref);
  }

  // --- lifecycle ---
  createOrg(org: OrgId): Promise<Api.OrgInfo> {
    return this.#guard(() => this.#life.createOrg(orgId(org)));
  }
  listOrgs(): Promise<readonly Api.OrgInfo[]> {
    return this.#guard(() =>
      this.#h.d.registry.listOrgs().map((o) => orgInfo(o, this.#h.d.registry.listOeks(o.org))),
    );
  }
  describeOrg(org: OrgId): Promise<Api.OrgInfo> {
    return this.#guard(() => this.#life.describeOrg(orgId(org)));
  }
  setOrgEnabled(org: OrgId, enabled: boolean): Promise<Api.OrgInfo> {
    return this.#guard(() => this.#life.setOrgEnabled(orgId(org), enabled));
  }
  createTenant(
    org: OrgId,
    tenant: Api.TenantInfo['tenant'],
    policy?: Partial<Api.KeyPolicy>,
  ): Promise<Api.TenantInfo> {
    return this.#guard(() => this.#life.createTenant(orgId(org), tenantId(tenant), policy));
  }
  createTenants(
    org: OrgId,
    tenants: readonly Api.TenantInfo['tenant'][],
    policy?: Partial<Api.KeyPolicy>,
  ): Promise<readonly Api.TenantCreateResult[]> {
    const names = tenants.map((t) => tenantId(t));
    return this.#guard(() => createTenantsBulk(this.#h, this.#defaultPeriodS, orgId(org), names, policy));
  }
  listTenants(org: OrgId): Promise<readonly Api.TenantInfo[]> {
    return this.#guard(() =>
      this.#h.d.registry
        .listTenants(orgId(org))
        .filter((t) => t.state === 'active')
        .map((t) => tenantInfo(t, this.#h.d.registry.listTeks(t.org, t.tenant))),
    );
  }
  describeTenant(ref: TenantRef): Promise<Api.TenantInfo> {
    return this.#guard(() => {
      const t = this.#active(ref);
      return tenantInfo(t, this.#h.d.registry.listTeks(t.org, t.tenant));
    });
  }
  setTenantEnabled(ref: TenantRef, enabled: boolean): Promise<Api.TenantInfo> {
    return this.#guard(() => this.#life.setTenantEnabled(this.#active(ref), enabled));
  }
  createCustomer(
    ref: TenantRef,
    customer: CustomerId,
    policy?: Partial<Api.KeyPolicy>,
  ): Promise<Api.CustomerInfo> {
    return this.#guard(() => this.#life.createCustomer(this.#active(ref), customerId(customer), policy));
  }
  listCustomers(ref: TenantRef): Promise<readonly Api.CustomerInfo[]> {
    return this.#guard(() => {
      const t = this.#active(ref);
      const s = this.#h.store(t);
      return s
        .listCustomers()
        .filter((c) => c.state === 'active')
        .map((c) =>
          customerInfo(t, c, s.listCeks(c.customer), (v) =>
            this.#usage.pending(t.org, t.tenant, c.customer, v),
          ),
        );
    });
  }
  describeCustomer(ref: TenantRef, customer: CustomerId): Promise<Api.CustomerInfo> {
    return this.#guard(() => this.#life.describeCustomer(this.#active(ref), customerId(customer)));
  }
  setCustomerEnabled(ref: TenantRef, customer: CustomerId, enabled: boolean): Promise<Api.CustomerInfo> {
    return this.#guard(() => this.#life.setCustomerEnabled(this.#active(ref), customerId(customer), enabled));
  }
  rotateOrgKey(org: OrgId): Promise<Api.OrgInfo> {
    return this.#guard(() => this.#exclusive(() => this.#life.rotateOrgKey(orgId(org))));
  }
  rotateTenantKey(ref: TenantRef): Promise<Api.TenantInfo> {
    return this.#guard(() => this.#life.rotateTenantKey(this.#active(ref)));
  }
  rotateCustomerKey(ref: TenantRef, customer: CustomerId): Promise<Api.CustomerInfo> {
    return this.#guard(() => this.#life.rotateCustomerKey(this.#active(ref), customerId(customer)));
  }
  setKeyPolicy(
    ref: TenantRef,
    customer: CustomerId | undefined,
    policy: Partial<Api.KeyPolicy>,
  ): Promise<Api.KeyInfo> {
    return this.#guard(() =>
      this.#life.setKeyPolicy(
        this.#active(ref),
        customer === undefined ? undefined : customerId(customer),
        policy,
      ),
    );
  }
  setKeyVersionEnabled(
    ref: TenantRef,
    customer: CustomerId | undefined,
    version: KeyVersion,
    enabled: boolean,
  ): Promise<Api.KeyInfo> {
    return this.#guard(() =>
      this.#life.setKeyVersionEnabled(
        this.#active(ref),
        customer === undefined ? undefined : customerId(customer),
        version,
        enabled,
      ),
    );
  }
  rotateDueKeys(now?: Date, org?: OrgId): Promise<{ rotated: number; failed: number }> {
    return this.#guard(() => this.#life.rotateDueKeys(now ?? this.#h.d.now(), org));
  }
  // Recorded before the first destruction (HSM-resident asymmetric keys go first), then resumed
  // until done: see shred-intent-runner.ts.
  destroyTenant(ref: TenantRef, opts?: Api.ShredOptions): Promise<Api.ShredReceipt> {
    const r = { org: orgId(ref.org), tenant: tenantId(ref.tenant) };
    return this.#guard(() => this.#exclusive(() => this.#intents.destroyTenant(r, opts)));
  }
  destroyCustomer(ref: TenantRef, customer: CustomerId, opts?: Api.ShredOptions): Promise<Api.ShredReceipt> {
    const r = { org: orgId(ref.org), tenant: tenantId(ref.tenant) };
    return this.#guard(() =>
      this.#exclusive(() => this.#intents.destroyCustomer(r, customerId(customer), opts)),
    );
  }
  shredReceiptForApproval(
    approvalId: string,
    target: { org: string; tenant: string; customer?: string },
  ): Promise<Api.ShredReceipt | undefined> {
    return this.#guard(() => this.#exclusive(() => this.#intents.receiptForApproval(approvalId, target)));
  }
  brokerKeys(): Promise<Api.BrokerKeys> {
    return this.#guard(async () => {
      const audit = this.#auditKeyPem?.();
      return {
        receiptKey: await this.#signer.publicKey(),
        ...(audit !== undefined ? { auditCheckpointKey: publishedKey(audit) } : {}),
        brokerInstance: this.#signer.instanceId(),
      };
    });
  }

  // --- data plane ---
  encrypt(ref: TenantRef, req: Api.EncryptRequest): Promise<Api.EncryptResult> {
    return this.#data(ref, () => this.#dp.encrypt(ref, req.customer, req.plaintext, req.aad));
  }
  decrypt(ref: TenantRef, req: Api.DecryptRequest, guard?: Api.CustomerGuard): Promise<Api.DecryptResult> {
    return this.#data(ref, () => this.#dp.decrypt(ref, req, guard));
  }
  encryptBatch(
    ref: TenantRef,
    items: readonly Api.EncryptRequest[],
  ): Promise<Api.ItemResult<Api.EncryptResult>[]> {
    return this.#guard(() => {
      this.#batch.check(items);
      return this.#dp.encryptBatch(ref, items);
    });
  }
  decryptBatch(
    ref: TenantRef,
    items: readonly Api.DecryptRequest[],
    guard?: Api.CustomerGuard,
  ): Promise<Api.ItemResult<Api.DecryptResult>[]> {
    return this.#guard(() =>
      this.#batch.run(items, (it) => this.#dp.cleanly(ref, () => this.#dp.decrypt(ref, it, guard))),
    );
  }
  generateDataKey(ref: TenantRef, req: Api.DataKeyRequest): Promise<Api.DataKeyResult> {
    return this.#data(ref, () => this.#dp.generateDataKey(ref, req.customer, req.aad, req.length));
  }
  decryptDataKey(
    ref: TenantRef,
    req: { wrappedKey: Uint8Array; aad: Uint8Array },
    guard?: Api.CustomerGuard,
  ): Promise<{ plaintextKey: Uint8Array; customer: CustomerId; keyVersion: KeyVersion }> {
    return this.#data(ref, () => this.#dp.decryptDataKey(ref, req.wrappedKey, req.aad, guard));
  }
  rewrap(ref: TenantRef, req: Api.DecryptRequest, guard?: Api.CustomerGuard): Promise<Api.RewrapResult> {
    return this.#data(ref, () => this.#dp.rewrap(ref, req, guard));
  }
  encryptStream(
    ref: TenantRef,
    req: { customer?: CustomerId; aad: Uint8Array },
  ): Promise<Api.StreamEncryptor> {
    return this.#data(ref, () => this.#dp.encryptStream(ref, req.customer, req.aad));
  }
  decryptStream(
    ref: TenantRef,
    req: { header: Uint8Array; aad: Uint8Array },
    guard?: Api.CustomerGuard,
  ): Promise<Api.StreamDecryptor> {
    return this.#data(ref, () => this.#dp.decryptStream(ref, req.header, req.aad, guard));
  }

  /** Counters for /metrics: key cache and open tenant files (no key material). */
  stats(): { cacheHits: number; cacheMisses: number; cacheEntries: number; openTenantFiles: number } {
    return {
      cacheHits: this.#cache.hits,
      cacheMisses: this.#cache.misses,
      cacheEntries: this.#cache.size,
      openTenantFiles: this.#h.d.pool.openCount,
    };
  }

  /** Tenant files no registry row names (see TenantStorePool.strayFiles), for the operator. */
  strayTenantFiles(): string[] {
    const reg = this.#h.d.registry;
    return this.#h.d.pool.strayFiles(
      [...reg.listActiveTenants(), ...reg.listDestroyedTenants()].map((t) => t.fileName),
    );
  }

  health(): { ready: boolean; degraded: boolean; reason?: string } {
    if (this.#closed) return { ready: false, degraded: false, reason: 'closed' };
    const hsm = this.#h.d.hsm.health();
    const recent =
      this.#h.d.now().getTime() - Math.max(this.#lastHsmError, this.#cache.lastDegradedAt) < 10_000;
    if (!hsm.ok || recent) {
      return {
        ready: true,
        degraded: true,
        reason: hsm.reason ?? 'HSM unavailable: serving cached keys only',
      };
    }
    return { ready: true, degraded: false };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    try {
      this.#usage.flush(true);
    } finally {
      this.#cache.clear();
      this.asymmetric?.close();
      this.#h.d.pool.closeAll();
      this.#h.d.registry.close();
    }
  }

  /**
   * Before a shred's receipt (shred-purge.ts): no copy of the shredded keys in this process, and
   * with several workers none in any other (each acknowledges dropping them).
   */
  async #purgeShredded(s: ShredRow): Promise<void> {
    const customer = s.kind === 'tenant' ? undefined : (s.customer as string);
    await purgeShredded(this.#h, this.#streams, this.asymmetric, s);
    await this.#cluster?.beforeReceipt({
      org: s.org,
      tenant: s.tenant,
      ...(customer !== undefined ? { customer } : {}),
    });
  }

  #purgeLocal(org: string, tenant: string, customer: string | undefined): Promise<void> {
    return purgeScope(this.#h, this.#streams, this.asymmetric, org, tenant, customer);
  }

  #active(ref: TenantRef): TenantRow {
    return this.#h.activeTenant(orgId(ref.org), tenantId(ref.tenant));
  }
}

/** Offline verification of a shred receipt against a pinned key (re-exported for the daemon and tests). */
export { checkShredReceipt, verifyShredReceipt } from './receipt-signer.ts';
