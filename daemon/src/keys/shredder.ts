/**
 * Crypto-shredding of tenants and customers. Each shred is a durable row in `shred_log`; its
 * steps are idempotent so a crash at any point resumes at open:
 *
 *   tenant:   registry txn (tombstone, delete every wrapped TEK, log row 'epoch') -> zero caches ->
 *             close + delete the tenant file (-wal, -shm) -> shred epoch (new OEK, rewrap the
 *             survivors, C_DestroyObject the old OEK versions) -> signed receipt -> 'done'
 *   customer: tenant-file txn (tombstone, delete every wrapped CEK) -> log row 'tek-rotation' ->
 *             zero caches -> rotate the TEK (survivors' CEKs rewrapped) -> delete every older TEK
 *             row -> 'epoch' -> shred epoch -> receipt -> 'done'
 *
 * The TEK rotation matters for customers: a backup of the tenant file holds the customer's
 * wrapped CEKs, and a backup of the registry holds the TEK that opens them. The epoch destroys
 * the OEK under which every such TEK copy was wrapped.
 */
import { KbError } from '../errors.ts';
import { isSoftwareTokenProfile } from '../hsm/software-token.ts';
import type { RegistryStore, ShredRow } from '../store/registry-store.ts';
import { ShredIntents } from '../store/shred-intents.ts';
import type { AsymmetricKeyRow } from './asymmetric-key-store.ts';
import type { Hierarchy } from './hierarchy.ts';
import { tenantKey } from './hierarchy.ts';
import type { ShredReceipt } from './key-broker-api.ts';
import type { KeyedMutex } from './keyed-mutex.ts';
import type { ReceiptSigner } from './receipt-signer.ts';
import type { EpochResult, ShredEpochRunner } from './shred-epoch.ts';
import type { UsageCounter } from './usage-counter.ts';

/**
 * A tenant asymmetric key (Keys service) that a shred makes unreadable, named in the receipt
 * (a type, not an interface, so it is assignable to the receipt's JSON).
 */
export type DestroyedKey = {
  readonly keyId: string;
  readonly algorithm: string;
  /** Every stored version (each wrapped under the destroyed TEK or CEK). */
  readonly versions: readonly number[];
  /** The customer whose CEK wraps it (omitted for the tenant's own keys). */
  readonly customer?: string;
  /** Token labels of its HSM-resident versions, destroyed (C_DestroyObject) before the shred. */
  readonly hsmLabels?: readonly string[];
};

/** The asymmetric keys of what is shredded: token keys already destroyed, every key named. */
export interface ShredKeys {
  readonly hsmKeyLabels: readonly string[];
  readonly keys: readonly DestroyedKey[];
}

export const NO_SHRED_KEYS: ShredKeys = { hsmKeyLabels: [], keys: [] };

/** Most keys a receipt names one by one (by key id); `keyCount` always gives the total. */
export const RECEIPT_MAX_KEYS = 1000;

interface ShredDetail {
  /** Labels of the asymmetric keys destroyed in the HSM (C_DestroyObject) before the shred. */
  hsmKeyLabels?: string[];
  /** The asymmetric keys made unreadable (the first RECEIPT_MAX_KEYS by key id), and how many in all. */
  keys?: DestroyedKey[];
  keyCount?: number;
  cekVersions?: number[];
  tekVersions?: number[];
  newTekVersion?: number;
  tenantFile?: boolean;
}

/**
 * Destroy the token keys among `rows` (one row per key version) and name every key among them,
 * for the receipt. The token object is an HSM-resident key's only copy, so its destruction is
 * that key's shred.
 */
export async function shredKeysOf(
  rows: readonly AsymmetricKeyRow[],
  destroyHsmKey: (label: string) => Promise<void>,
): Promise<ShredKeys> {
  const labels: string[] = [];
  const keys = new Map<string, { algorithm: string; customer: string; versions: number[]; hsm: string[] }>();
  for (const r of rows) {
    const k = keys.get(r.keyId) ?? { algorithm: r.type, customer: r.customer, versions: [], hsm: [] };
    keys.set(r.keyId, k);
    k.versions.push(r.version);
    if (r.meta.hsmLabel === undefined) continue;
    await destroyHsmKey(r.meta.hsmLabel);
    labels.push(r.meta.hsmLabel);
    k.hsm.push(r.meta.hsmLabel);
  }
  return {
    hsmKeyLabels: labels.sort(),
    keys: [...keys].map(([keyId, k]) => ({
      keyId,
      algorithm: k.algorithm,
      versions: k.versions,
      ...(k.customer !== '' ? { customer: k.customer } : {}),
      ...(k.hsm.length > 0 ? { hsmLabels: k.hsm.sort() } : {}),
    })),
  };
}

/** The receipt fields of the keys: sorted by key id, at most RECEIPT_MAX_KEYS listed, all counted. */
export function keysDetail(o: ShredKeys): Pick<ShredDetail, 'hsmKeyLabels' | 'keys' | 'keyCount'> {
  const keys = [...o.keys].sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
  return {
    hsmKeyLabels: [...o.hsmKeyLabels],
    ...(keys.length > 0 ? { keys: keys.slice(0, RECEIPT_MAX_KEYS), keyCount: keys.length } : {}),
  };
}

export class Shredder {
  readonly #h: Hierarchy;
  readonly #reg: RegistryStore;
  readonly #tenantLock: KeyedMutex;
  readonly #epochs: ShredEpochRunner;
  readonly #signer: ReceiptSigner;
  readonly #usage: UsageCounter;
  readonly #auditHead: (() => { seq: number; hash: string }) | undefined;
  readonly #intents: ShredIntents;
  /**
   * Run after the epoch and before the receipt is signed: remove every copy of the shredded keys
   * still in the process (caches refilled by loads in flight, open streams, worker caches).
   */
  readonly #purge: (s: ShredRow) => Promise<void>;
  /** Shred ids a live request or a resume pass is driving. */
  readonly #inProgress = new Set<number>();

  constructor(
    h: Hierarchy,
    tenantLock: KeyedMutex,
    epochs: ShredEpochRunner,
    signer: ReceiptSigner,
    usage: UsageCounter,
    auditHead: (() => { seq: number; hash: string }) | undefined,
    purge: (s: ShredRow) => Promise<void> = () => Promise.resolve(),
  ) {
    this.#purge = purge;
    this.#intents = new ShredIntents(h.d.registry);
    this.#h = h;
    this.#reg = h.d.registry;
    this.#tenantLock = tenantLock;
    this.#epochs = epochs;
    this.#signer = signer;
    this.#usage = usage;
    this.#auditHead = auditHead;
  }

  /** Shred a tenant; `intentId` (shred-intents.ts) is marked started with the tombstone. */
  async destroyTenant(
    org: string,
    tenant: string,
    owned: ShredKeys = NO_SHRED_KEYS,
    intentId?: number,
  ): Promise<ShredReceipt> {
    const id = await this.#tenantLock.run(tenantKey(org, tenant), async () => {
      const t = this.#h.activeTenant(org, tenant);
      const teks = this.#reg.listTeks(org, tenant).map((r) => r.version);
      const detail: ShredDetail = { ...keysDetail(owned), tekVersions: teks, tenantFile: true };
      const shredId = this.#reg.tx(() => {
        const sid = this.#reg.markTenantDestroyed(
          org,
          tenant,
          this.#h.d.now().toISOString(),
          JSON.stringify(detail),
        );
        if (intentId !== undefined) this.#intents.started(intentId, sid);
        return sid;
      });
      this.#h.evictTenant(org, tenant);
      this.#usage.drop(`${org}/${tenant}/`);
      this.#inProgress.add(shredId);
      this.#h.d.pool.deleteFiles(t.fileName);
      return shredId;
    });
    return this.#finishOwned(id);
  }

  async destroyCustomer(
    org: string,
    tenant: string,
    customer: string,
    owned: ShredKeys = NO_SHRED_KEYS,
    intentId?: number,
  ): Promise<ShredReceipt> {
    const id = await this.#tenantLock.run(tenantKey(org, tenant), async () => {
      const t = this.#h.activeTenant(org, tenant);
      const c = this.#h.customerRow(t, customer);
      if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
      // Log first: if we crash after the CEK delete, resume still rotates the TEK.
      const shredId = this.#reg.tx(() => {
        const sid = this.#reg.insertShred({
          kind: 'customer',
          org,
          tenant,
          customer,
          state: 'tek-rotation',
          requestedAt: this.#h.d.now().toISOString(),
          detail: JSON.stringify(keysDetail(owned) satisfies ShredDetail),
        });
        if (intentId !== undefined) this.#intents.started(intentId, sid);
        return sid;
      });
      this.#inProgress.add(shredId);
      try {
        await this.#customerSteps(shredId);
      } catch (err) {
        this.#inProgress.delete(shredId);
        throw err;
      }
      return shredId;
    });
    return this.#finishOwned(id);
  }

  async #finishOwned(id: number): Promise<ShredReceipt> {
    try {
      return await this.#finish(id);
    } finally {
      this.#inProgress.delete(id);
    }
  }

  /** Tombstone + delete CEKs (idempotent), rotate the TEK, drop older TEK rows, move to 'epoch'. */
  async #customerSteps(shredId: number): Promise<void> {
    const s = this.#reg.getShred(shredId) as ShredRow;
    const customer = s.customer as string;
    const live = this.#h.tenantRow(s.org, s.tenant);
    if (!live || live.state !== 'active') {
      // The whole tenant was shredded meanwhile: its epoch covers this customer too.
      this.#reg.updateShred(shredId, { state: 'epoch' });
      return;
    }
    const t = live;
    const ceks = this.#h.store(t).destroyCustomer(customer);
    this.#h.evictCustomer(t, customer);
    this.#usage.drop(`${s.org}/${s.tenant}/${customer}/`);
    const prev = JSON.parse(s.detail) as ShredDetail;
    const cekVersions = [...new Set([...(prev.cekVersions ?? []), ...ceks])].sort((a, b) => a - b);
    this.#reg.updateShred(shredId, {
      state: 'tek-rotation',
      detail: JSON.stringify({ ...prev, cekVersions }),
    });
    const newTek = await this.#h.rotateTek(t);
    const gone = this.#reg.tx(() => this.#reg.deleteTeksBelow(s.org, s.tenant, newTek));
    this.#h.evictTeks(s.org, s.tenant, newTek);
    const tekVersions = [...new Set([...(prev.tekVersions ?? []), ...gone])].sort((a, b) => a - b);
    this.#reg.updateShred(shredId, {
      state: 'epoch',
      detail: JSON.stringify({ ...prev, cekVersions, tekVersions, newTekVersion: newTek }),
    });
  }

  /** Run (or join) the org's epoch, then sign and store the receipt. */
  async #finish(shredId: number): Promise<ShredReceipt> {
    const s = this.#reg.getShred(shredId) as ShredRow;
    const result = await this.#epochs.requestShredEpoch(s.org);
    await this.#purge(s);
    const receipt = await this.#receipt(s, result);
    this.#reg.updateShred(shredId, {
      state: 'done',
      epochId: result.epoch.id,
      receipt: JSON.stringify(receipt),
    });
    return receipt;
  }

  async #receipt(s: ShredRow, r: EpochResult): Promise<ShredReceipt> {
    const d = JSON.parse(s.detail) as ShredDetail;
    const head = this.#auditHead?.();
    return this.#signer.sign({
      type: 'keybroker.shred-receipt',
      v: 2,
      shredId: s.id,
      kind: s.kind,
      org: s.org,
      tenant: s.tenant,
      customer: s.customer ?? undefined,
      requestedAt: s.requestedAt,
      completedAt: this.#h.d.now().toISOString(),
      destroyed: {
        hsmKeyLabels: d.hsmKeyLabels?.length ? d.hsmKeyLabels : undefined,
        keys: d.keys?.length ? d.keys : undefined,
        keyCount: d.keyCount || undefined,
        customerKeyVersions: d.cekVersions ?? undefined,
        tenantKeyVersions: d.tekVersions ?? undefined,
        tenantFile: d.tenantFile ?? undefined,
      },
      replacementTenantKeyVersion: d.newTekVersion ?? undefined,
      epoch: {
        id: r.epoch.id,
        newOrgKeyVersion: r.epoch.newOek,
        newOrgKeyLabel: r.epoch.newLabel,
        destroyedOrgKeys: r.destroyed.map((x) => ({ version: x.version, hsmLabel: x.label })),
      },
      hsmProfile: this.#h.d.hsm.profileName,
      // The token is files on the host: the shred holds only if no copy of them survives (H3).
      softwareToken: isSoftwareTokenProfile(this.#h.d.hsm.profileName) ? true : undefined,
      auditPosition: head ? { seq: head.seq, hash: head.hash } : undefined,
    });
  }

  /**
   * The receipt of shred `shredId`: stored if done; else driven to completion here, or awaited
   * (up to `waitMs`) while a live request or a resume pass drives it.
   */
  async completed(shredId: number, waitMs = 60_000): Promise<ShredReceipt> {
    const until = Date.now() + waitMs;
    for (;;) {
      const s = this.#reg.getShred(shredId);
      if (!s) throw new KbError('NOT_FOUND', 'shred');
      if (s.state === 'done' && s.receipt !== null) return JSON.parse(s.receipt) as ShredReceipt;
      if (!this.#inProgress.has(shredId)) {
        this.#inProgress.add(shredId);
        try {
          return await this.#drive(s);
        } finally {
          this.#inProgress.delete(shredId);
        }
      }
      if (Date.now() > until) throw new KbError('HSM_UNAVAILABLE', 'the shred is still running');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Finish one shred from its recorded state (caller holds it in #inProgress). */
  async #drive(s: ShredRow): Promise<ShredReceipt> {
    if (s.kind === 'customer' && s.state === 'tek-rotation') {
      await this.#tenantLock.run(tenantKey(s.org, s.tenant), () => this.#customerSteps(s.id));
    }
    return this.#finish(s.id);
  }

  /** Whether some shred or epoch is unfinished and not being worked on by a live request. */
  get hasUnfinished(): boolean {
    return (
      this.#reg.listUnfinishedShreds().some((s) => !this.#inProgress.has(s.id)) ||
      (this.#inProgress.size === 0 && this.#reg.listUnfinishedEpochs().length > 0)
    );
  }

  /**
   * Finish what a crash (or a failed HSM call) interrupted: file deletes, TEK rotations, epochs,
   * receipts. Runs at open and from a timer; shreds owned by a live request are left to it.
   */
  async resume(): Promise<void> {
    for (const t of this.#reg.listDestroyedTenants()) this.#h.d.pool.deleteFiles(t.fileName);
    await this.#epochs.resumeAll();
    for (const s of this.#reg.listUnfinishedShreds()) {
      if (this.#inProgress.has(s.id)) continue;
      this.#inProgress.add(s.id);
      try {
        await this.#drive(s);
      } finally {
        this.#inProgress.delete(s.id);
      }
    }
  }
}
