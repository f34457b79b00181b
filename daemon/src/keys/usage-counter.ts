/**
 * Operations per CEK version, counted in memory and flushed in batches (one transaction per
 * tenant file per flush), so counting costs no DB write per operation. A crash loses at most one
 * flush interval of counts: usage-limit rotation may then come that many operations late.
 */
import type { TenantRow } from '../store/registry-store.ts';
import type { Hierarchy } from './hierarchy.ts';
import { CLOSED_FILES_PER_TICK, filesThisTick, unflushedByFile } from './unflushed-by-file.ts';

/** Pending counts kept before closed tenant files are opened just to write them. */
const MAX_PENDING = 10_000;

interface Count {
  readonly t: TenantRow;
  readonly customer: string;
  readonly version: number;
  total: number;
  unflushed: number;
}

export class UsageCounter {
  readonly #h: Hierarchy;
  readonly #m = new Map<string, Count>();
  readonly #onError: (err: unknown) => void;

  constructor(h: Hierarchy, onError: (err: unknown) => void) {
    this.#h = h;
    this.#onError = onError;
  }

  /** Count `n` operations and return the version's total (stored + unflushed). */
  add(t: TenantRow, customer: string, version: number, n = 1): number {
    const k = `${t.org}/${t.tenant}/${customer}/${version}`;
    let c = this.#m.get(k);
    if (!c) {
      const stored = this.#h.store(t).getCek(customer, version)?.uses ?? 0;
      c = { t, customer, version, total: stored, unflushed: 0 };
      this.#m.set(k, c);
    }
    c.total += n;
    c.unflushed += n;
    return c.total;
  }

  /** The version's total without counting (stored + unflushed). */
  total(t: TenantRow, customer: string, version: number): number {
    const c = this.#m.get(`${t.org}/${t.tenant}/${customer}/${version}`);
    return c ? c.total : (this.#h.store(t).getCek(customer, version)?.uses ?? 0);
  }

  pending(org: string, tenant: string, customer: string, version: number): number {
    return this.#m.get(`${org}/${tenant}/${customer}/${version}`)?.unflushed ?? 0;
  }

  /**
   * Write unflushed counts; written entries are dropped and re-read from the store on next use.
   * Files already open are written every tick; counts of closed files wait until their file is
   * open anyway, unless the backlog passes MAX_PENDING (then a bounded slice per tick), so a
   * flush never opens and closes hundreds of tenant files in one event-loop turn. `all` (at
   * close) writes everything.
   */
  flush(all = false): void {
    const byFile = unflushedByFile(this.#m);
    const over = this.#m.size > MAX_PENDING;
    const closedBudget = all ? Number.POSITIVE_INFINITY : over ? CLOSED_FILES_PER_TICK : 0;
    for (const list of filesThisTick(byFile, (f) => this.#h.d.pool.isOpen(f), closedBudget)) {
      for (const c of list) this.#m.delete(`${c.t.org}/${c.t.tenant}/${c.customer}/${c.version}`);
      const first = list[0] as Count;
      const live = this.#h.tenantRow(first.t.org, first.t.tenant);
      if (!live || live.state !== 'active') continue;
      try {
        this.#h
          .store(live)
          .addCekUses(list.map((c) => ({ customer: c.customer, version: c.version, n: c.unflushed })));
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  /** Forget counts of a destroyed tenant or customer (prefix "org/tenant/" or "org/tenant/customer/"). */
  drop(prefix: string): void {
    for (const k of this.#m.keys()) if (k.startsWith(prefix)) this.#m.delete(k);
  }
}
