/**
 * Keyed blind indexes: deterministic tokens of normalized values (emails, phone numbers) that a
 * service stores next to the ciphertext and looks rows up by. token = HMAC-SHA256(index key,
 * normalized value) truncated to the index's 16 or 32 bytes, where the index key of (tenant,
 * customer, index name, index version) is derived from one CEK version of the customer
 * (cek-subkey.ts, label "keybroker blind index v1"). That CEK version is pinned per customer at
 * first use, so CEK rotations leave tokens alone; a customer or tenant shred takes the CEKs and
 * with them every index key, also for copies of the tenant file.
 *
 * Definitions (name, normalization, output length) are per tenant and versioned: a write uses the
 * primary version; a query gets the tokens of every searchable version (min_version..primary,
 * newest first), so lookups keep working while rows are re-indexed after a rotation.
 */
import { createHmac } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { KbError, toKbError } from '../errors.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';
import type { CustomerId, TenantRef } from '../ids.ts';
import {
  addBlindIndexVersion,
  getBlindIndex,
  listBlindIndexes,
  listBlindIndexVersions,
  pinBlindIndexCek,
  setBlindIndexMinVersion,
} from '../store/blind-index-rows.ts';
import type { BlindIndexRow, BlindIndexVersionRow } from '../store/blind-index-rows.ts';
import type { TenantRow } from '../store/registry-store.ts';
import type { TenantStore } from '../store/tenant-store.ts';
import { normalizationBits, normalizationSteps, normalizeIndexInput } from './blind-index-normalize.ts';
import type { NormalizationStep } from './blind-index-normalize.ts';
import { cekSubkey, SUBKEY_LABEL, subkeyInfo } from './cek-subkey.ts';
import type { Hierarchy } from './hierarchy.ts';
import type { ItemResult } from './key-broker-api.ts';

/** Index names: as key names (ids.ts grammar). */
const INDEX_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Largest input value, in bytes (before normalization). */
export const MAX_INDEX_VALUE_BYTES = 4096;
/** Indexes per tenant and versions per index: each query costs one HMAC per searchable version. */
export const MAX_BLIND_INDEXES = 1000;
export const MAX_BLIND_INDEX_VERSIONS = 100;

export interface BlindIndexParams {
  readonly normalization: readonly NormalizationStep[];
  readonly outputBytes: 16 | 32;
}
export interface BlindIndexVersionInfo extends BlindIndexParams {
  readonly version: number;
  readonly createdAt: string;
  readonly searchable: boolean;
}
export interface BlindIndexInfo {
  readonly name: string;
  readonly primaryVersion: number;
  readonly minVersion: number;
  readonly createdAt: string;
  readonly versions: readonly BlindIndexVersionInfo[];
}
export interface BlindIndexQuery {
  readonly index: string;
  /** Defaults to DEFAULT_CUSTOMER. */
  readonly customer?: CustomerId;
  readonly value: Uint8Array;
  /** true: a token per searchable version (queries); false: the primary's only (writes). */
  readonly allSearchable: boolean;
}
export interface BlindIndexToken {
  readonly version: number;
  readonly token: Uint8Array;
}

/** Runs a call: closed-broker check, tenant-gone mapping, error logging (KeyBroker's #data). */
export type BrokerGuard = <T>(ref: TenantRef, fn: () => Promise<T>) => Promise<T>;

/** An index name, or INVALID_ARGUMENT naming the grammar. */
export function blindIndexName(v: unknown): string {
  if (typeof v !== 'string' || !INDEX_NAME.test(v))
    throw new KbError('INVALID_ARGUMENT', `index must match ${INDEX_NAME.source}`);
  return v;
}

/**
 * HKDF info of the index key of (org, tenant, customer, CEK version, index name, index version):
 * "keybroker blind index v1" ‖ lp8(org) ‖ lp8(tenant) ‖ lp8(customer) ‖ u32 cek_version ‖
 * lp8(name) ‖ u32 version ‖ u32 output_bytes ‖ u32 normalization bits.
 */
export function blindIndexKeyInfo(
  org: string,
  tenant: string,
  customer: string,
  cekVersion: number,
  name: string,
  v: Pick<BlindIndexVersionRow, 'version' | 'outputBytes' | 'normalization'>,
): Uint8Array {
  return subkeyInfo(SUBKEY_LABEL.blindIndex, [
    org,
    tenant,
    customer,
    cekVersion,
    name,
    v.version,
    v.outputBytes,
    v.normalization,
  ]);
}

/** HMAC-SHA256(key, normalized value), truncated to the version's output length. */
export function blindIndexToken(
  key: KeyObject,
  v: Pick<BlindIndexVersionRow, 'outputBytes' | 'normalization'>,
  value: Uint8Array,
): Uint8Array {
  const input = normalizeIndexInput(value, v.normalization);
  const mac = createHmac('sha256', key).update(input).digest();
  return v.outputBytes === mac.length ? mac : mac.subarray(0, v.outputBytes);
}

function checkParams(p: BlindIndexParams): number {
  if (p.outputBytes !== 16 && p.outputBytes !== 32)
    throw new KbError('INVALID_ARGUMENT', 'output_bytes must be 16 or 32');
  return normalizationBits(p.normalization);
}

/** What a call needs for the items of one (index, customer, versions): the keys, newest first. */
interface Plan {
  readonly customer: string;
  readonly keys: readonly { readonly v: BlindIndexVersionRow; readonly key: KeyObject }[];
}

/** The plan an item shares with others of its call; undefined for names the plan would refuse. */
function planKey(q: BlindIndexQuery): string | undefined {
  if (typeof q.index !== 'string') return undefined;
  return `${q.index}\u0000${q.customer ?? ''}\u0000${q.allSearchable ? 1 : 0}`;
}

export class BlindIndexes {
  readonly #h: Hierarchy;
  readonly #guard: BrokerGuard;
  /** The active, enabled tenant for data-plane calls (DataPlane.tenant). */
  readonly #servingTenant: (ref: TenantRef) => TenantRow;

  constructor(h: Hierarchy, servingTenant: (ref: TenantRef) => TenantRow, guard: BrokerGuard) {
    this.#h = h;
    this.#servingTenant = servingTenant;
    this.#guard = guard;
  }

  // --- definitions (Admin RPCs) ---
  create(ref: TenantRef, name: string, params: BlindIndexParams): Promise<BlindIndexInfo> {
    return this.#guard(ref, async () => {
      const n = blindIndexName(name);
      const bits = checkParams(params);
      const s = this.#store(ref);
      if (getBlindIndex(s, n)) throw new KbError('ALREADY_EXISTS', 'blind index');
      if (listBlindIndexes(s).length >= MAX_BLIND_INDEXES)
        throw new KbError('FAILED_PRECONDITION', `a tenant has at most ${MAX_BLIND_INDEXES} blind indexes`);
      const row = {
        name: n,
        version: 1,
        normalization: bits,
        outputBytes: params.outputBytes,
        createdAt: this.#now(),
      };
      try {
        addBlindIndexVersion(s, row);
      } catch (err) {
        // Two creates of one name at once: the loser sees the winner's row.
        if (getBlindIndex(s, n)) throw new KbError('ALREADY_EXISTS', 'blind index');
        throw err;
      }
      return this.#info(s, n);
    });
  }

  /** A new primary version, with the previous version's parameters unless `params` changes them. */
  rotate(ref: TenantRef, name: string, params: Partial<BlindIndexParams> = {}): Promise<BlindIndexInfo> {
    return this.#guard(ref, async () => {
      const n = blindIndexName(name);
      const s = this.#store(ref);
      for (let attempt = 0; attempt < 4; attempt++) {
        const idx = this.#index(s, n);
        if (idx.primaryVersion >= MAX_BLIND_INDEX_VERSIONS)
          throw new KbError(
            'FAILED_PRECONDITION',
            `an index has at most ${MAX_BLIND_INDEX_VERSIONS} versions`,
          );
        const prev = listBlindIndexVersions(s, n).at(-1) as BlindIndexVersionRow;
        const p: BlindIndexParams = {
          normalization: params.normalization ?? normalizationSteps(prev.normalization),
          outputBytes: params.outputBytes ?? (prev.outputBytes as 16 | 32),
        };
        const bits = checkParams(p);
        const row = {
          name: n,
          version: idx.primaryVersion + 1,
          normalization: bits,
          outputBytes: p.outputBytes,
          createdAt: this.#now(),
        };
        try {
          addBlindIndexVersion(s, row);
          return this.#info(s, n);
        } catch (err) {
          if (this.#index(s, n).primaryVersion === idx.primaryVersion) throw err;
        }
      }
      throw new KbError('INTERNAL', undefined, { detail: 'blind index primary kept changing' });
    });
  }

  /** Versions below `min` stop being searchable; `min` may move back (the keys are derived, not gone). */
  setMinVersion(ref: TenantRef, name: string, min: number): Promise<BlindIndexInfo> {
    return this.#guard(ref, async () => {
      const n = blindIndexName(name);
      const s = this.#store(ref);
      const idx = this.#index(s, n);
      if (!Number.isInteger(min) || min < 1 || min > idx.primaryVersion)
        throw new KbError('INVALID_ARGUMENT', 'min_version must be in [1, primary version]');
      setBlindIndexMinVersion(s, n, min);
      return this.#info(s, n);
    });
  }

  list(ref: TenantRef): Promise<BlindIndexInfo[]> {
    return this.#guard(ref, async () => {
      const s = this.#store(ref);
      return listBlindIndexes(s).map((r) => this.#info(s, r.name, r));
    });
  }

  // --- data plane ---
  compute(ref: TenantRef, q: BlindIndexQuery): Promise<BlindIndexToken[]> {
    return this.#guard(ref, async () => {
      const plans = new Map<string, Promise<Plan>>();
      const out = this.#tokens(await this.#planOf(ref, q, plans), q.value);
      this.#stillThere(ref, plans);
      return out;
    });
  }

  /**
   * Per-item user errors (unknown index, bad value); anything else fails the call. Items of one
   * (index, customer, versions) share one plan: one definition read and one key derivation per
   * version, so an item costs its normalization and HMAC (no await once its plan is made).
   */
  computeBatch(ref: TenantRef, qs: readonly BlindIndexQuery[]): Promise<ItemResult<BlindIndexToken[]>[]> {
    return this.#guard(ref, async () => {
      const plans = new Map<string, Promise<Plan>>();
      const out: ItemResult<BlindIndexToken[]>[] = [];
      let last: { q: BlindIndexQuery; plan: Plan } | undefined;
      for (const q of qs) {
        try {
          // Items of a batch mostly share index and customer: the last plan, without a lookup.
          let plan =
            last !== undefined &&
            last.q.index === q.index &&
            last.q.customer === q.customer &&
            last.q.allSearchable === q.allSearchable
              ? last.plan
              : undefined;
          if (plan === undefined) {
            const key = planKey(q);
            const made = key === undefined ? undefined : plans.get(key);
            // A settled plan is reused synchronously; a new one is made (and awaited) once.
            plan =
              (made !== undefined ? this.#settled.get(made) : undefined) ??
              (await this.#planOf(ref, q, plans));
            last = { q, plan };
          }
          out.push({ ok: true, value: this.#tokens(plan, q.value) });
        } catch (err) {
          const e = toKbError(err);
          if (!e.isUserError) throw e;
          out.push({ ok: false, error: e });
        }
      }
      this.#stillThere(ref, plans);
      return out;
    });
  }

  /** Settled plans by their promise (weak: they go with the call's map). */
  readonly #settled = new WeakMap<Promise<Plan>, Plan>();

  /** The plan of `q`'s (index, customer, versions), made once per call. */
  #planOf(ref: TenantRef, q: BlindIndexQuery, plans: Map<string, Promise<Plan>>): Promise<Plan> {
    const key = planKey(q);
    if (key === undefined) return Promise.reject(new KbError('INVALID_ARGUMENT', 'bad index or customer'));
    let p = plans.get(key);
    if (p === undefined) {
      const made = this.#makePlan(ref, q);
      p = made;
      plans.set(key, made);
      made.then(
        (plan) => this.#settled.set(made, plan),
        () => undefined,
      );
    }
    return p;
  }

  async #makePlan(ref: TenantRef, q: BlindIndexQuery): Promise<Plan> {
    const name = blindIndexName(q.index);
    const customer = q.customer ?? DEFAULT_CUSTOMER;
    const t = this.#servingTenant(ref);
    const c = this.#h.customerRow(t, customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    if (!c.enabled) throw new KbError('DISABLED', 'customer');
    const s = this.#h.store(t);
    const idx = getBlindIndex(s, name);
    if (!idx) throw new KbError('NOT_FOUND', 'blind index');
    // Newest first: the primary's token is always tokens[0].
    const searchable = listBlindIndexVersions(s, name)
      .filter((v) => v.version >= idx.minVersion && v.version <= idx.primaryVersion)
      .reverse();
    const versions = q.allSearchable ? searchable : searchable.slice(0, 1);
    const keys: { v: BlindIndexVersionRow; key: KeyObject }[] = [];
    for (const v of versions) {
      const cekVersion = pinBlindIndexCek(s, name, v.version, customer, c.primaryCek);
      // As for data under it: a disabled CEK version refuses the tokens derived from it.
      if (this.#h.disabledCeks(t, customer).has(cekVersion)) throw new KbError('DISABLED', 'key version');
      const info = blindIndexKeyInfo(t.org, t.tenant, customer, cekVersion, name, v);
      keys.push({ v, key: await cekSubkey(this.#h, t, customer, cekVersion, info) });
    }
    return { customer, keys };
  }

  #tokens(plan: Plan, value: Uint8Array): BlindIndexToken[] {
    if (!(value instanceof Uint8Array) || value.length > MAX_INDEX_VALUE_BYTES)
      throw new KbError('TOO_LARGE', `value over ${MAX_INDEX_VALUE_BYTES} bytes`);
    return plan.keys.map(({ v, key }) => ({ version: v.version, token: blindIndexToken(key, v, value) }));
  }

  /** A customer or tenant shredded while this ran must not get tokens. */
  #stillThere(ref: TenantRef, plans: Map<string, Promise<Plan>>): void {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    for (const p of plans.values()) {
      const plan = this.#settled.get(p);
      if (plan === undefined) continue;
      const c = this.#h.customerRow(t, plan.customer);
      if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    }
  }

  #store(ref: TenantRef): TenantStore {
    return this.#h.store(this.#h.activeTenant(ref.org, ref.tenant));
  }

  #index(s: TenantStore, name: string): BlindIndexRow {
    const idx = getBlindIndex(s, name);
    if (!idx) throw new KbError('NOT_FOUND', 'blind index');
    return idx;
  }

  #info(s: TenantStore, name: string, row?: BlindIndexRow): BlindIndexInfo {
    const idx = row ?? this.#index(s, name);
    return {
      name: idx.name,
      primaryVersion: idx.primaryVersion,
      minVersion: idx.minVersion,
      createdAt: idx.createdAt,
      versions: listBlindIndexVersions(s, name).map((v) => ({
        version: v.version,
        normalization: normalizationSteps(v.normalization),
        outputBytes: v.outputBytes as 16 | 32,
        createdAt: v.createdAt,
        searchable: v.version >= idx.minVersion && v.version <= idx.primaryVersion,
      })),
    };
  }

  #now(): string {
    return this.#h.d.now().toISOString();
  }
}
