/**
 * Operations per asymmetric key version, counted in memory and flushed in batches (one
 * transaction per tenant file), as usage-counter.ts does for CEKs: counting costs no DB write per
 * signature. A crash loses what was not yet written (a sweep interval, longer for counts waiting
 * behind CLOSED_FILES_PER_TICK closed files): a usage-limit rotation may come that late.
 */
import type { TenantRow } from '../store/registry-rows.ts';
import { AsymmetricKeyStore } from './asymmetric-key-store.ts';
import type { Hierarchy } from './hierarchy.ts';
import { CLOSED_FILES_PER_TICK, filesThisTick, unflushedByFile } from './unflushed-by-file.ts';

interface Count {
  readonly t: TenantRow;
  readonly keyId: string;
  readonly version: number;
  total: number;
  unflushed: number;
}

const keyOf = (org: string, tenant: string, keyId: string, version: number): string =>
  `${org}/${tenant}/${keyId}/${version}`;

export class AsymmetricKeyUsage {
  readonly #h: Hierarchy;
  readonly #m = new Map<string, Count>();

  constructor(h: Hierarchy) {
    this.#h = h;
  }

  #entry(t: TenantRow, keyId: string, version: number): Count {
    const k = keyOf(t.org, t.tenant, keyId, version);
    let c = this.#m.get(k);
    if (c === undefined) {
      const stored = AsymmetricKeyStore.get(this.#h.store(t), keyId, version)?.uses ?? 0;
      c = { t, keyId, version, total: stored, unflushed: 0 };
      this.#m.set(k, c);
    }
    return c;
  }

  /** Count `n` operations of a version; returns its total (stored + unflushed). */
  add(t: TenantRow, keyId: string, version: number, n = 1): number {
    const c = this.#entry(t, keyId, version);
    c.total += n;
    c.unflushed += n;
    return c.total;
  }

  /** The version's total without counting. */
  total(t: TenantRow, keyId: string, version: number): number {
    return this.#m.get(keyOf(t.org, t.tenant, keyId, version))?.total ?? this.#entry(t, keyId, version).total;
  }

  /** Counted but not yet written (added to the stored count in descriptions). */
  pending(t: TenantRow, keyId: string, version: number): number {
    return this.#m.get(keyOf(t.org, t.tenant, keyId, version))?.unflushed ?? 0;
  }

  /**
   * Write unflushed counts, `onError` per file. The broker's sweep writes open files and up to
   * CLOSED_FILES_PER_TICK closed ones (the rest wait for the next sweep), so a sweep never opens
   * every tenant file with a pending count in one event-loop turn; close (`all`) writes everything.
   */
  flush(onError: (err: unknown) => void, all = false): void {
    const byFile = unflushedByFile(this.#m);
    const closedBudget = all ? Number.POSITIVE_INFINITY : CLOSED_FILES_PER_TICK;
    for (const list of filesThisTick(byFile, (f) => this.#h.d.pool.isOpen(f), closedBudget)) {
      for (const c of list) this.#m.delete(keyOf(c.t.org, c.t.tenant, c.keyId, c.version));
      const first = list[0] as Count;
      const live = this.#h.tenantRow(first.t.org, first.t.tenant);
      if (!live || live.state !== 'active') continue;
      try {
        AsymmetricKeyStore.addUses(
          this.#h.store(live),
          list.map((c) => ({ keyId: c.keyId, version: c.version, n: c.unflushed })),
        );
      } catch (err) {
        onError(err);
      }
    }
  }

  /** Forget the counts of a tenant (shred) or of some keys of it (customer shred). */
  drop(org: string, tenant: string, keyIds?: ReadonlySet<string>): void {
    for (const [k, c] of this.#m) {
      if (c.t.org !== org || c.t.tenant !== tenant) continue;
      if (keyIds === undefined || keyIds.has(c.keyId)) this.#m.delete(k);
    }
  }
}
