/**
 * Several broker addresses: calls go to the first live one (`ordered`) or rotate over the live ones
 * (`round-robin`). A broker that answered UNAVAILABLE is skipped for a backoff period that doubles
 * with each consecutive failure; when every broker is marked down, the one that comes back first
 * is tried anyway (marks are a hint, never a reason to fail without trying).
 */
export type FailoverMode = 'ordered' | 'round-robin';

export interface BrokerPoolOptions {
  readonly mode?: FailoverMode;
  /** First skip period after a failure (default 1 s); doubles up to maxDownMs (default 30 s). */
  readonly downMs?: number;
  readonly maxDownMs?: number;
  readonly now?: () => number;
}

interface Slot {
  readonly index: number;
  downUntil: number;
  failures: number;
}

export class BrokerPool {
  readonly size: number;
  readonly #slots: Slot[];
  readonly #mode: FailoverMode;
  readonly #downMs: number;
  readonly #maxDownMs: number;
  readonly #now: () => number;
  #next = 0;

  constructor(size: number, o: BrokerPoolOptions = {}) {
    if (!Number.isInteger(size) || size < 1) throw new Error('at least one broker address is needed');
    this.size = size;
    this.#slots = Array.from({ length: size }, (_v, index) => ({ index, downUntil: 0, failures: 0 }));
    this.#mode = o.mode ?? 'ordered';
    this.#downMs = o.downMs ?? 1_000;
    this.#maxDownMs = o.maxDownMs ?? 30_000;
    this.#now = o.now ?? Date.now;
  }

  /** The broker to use next, avoiding `exclude` (brokers this call already tried) when possible. */
  pick(exclude: ReadonlySet<number> = new Set()): number {
    const now = this.#now();
    const start = this.#mode === 'round-robin' ? this.#next++ % this.size : 0;
    const order = Array.from({ length: this.size }, (_v, i) => this.#slots[(start + i) % this.size] as Slot);
    const fresh = order.filter((s) => !exclude.has(s.index));
    const candidates = fresh.length > 0 ? fresh : order;
    const live = candidates.find((s) => s.downUntil <= now);
    if (live !== undefined) return live.index;
    return candidates.reduce((a, b) => (b.downUntil < a.downUntil ? b : a)).index;
  }

  /** The broker answered UNAVAILABLE (or could not be reached): skip it for a while. */
  markDown(index: number): void {
    const s = this.#slots[index];
    if (s === undefined) return;
    s.failures++;
    s.downUntil = this.#now() + Math.min(this.#maxDownMs, this.#downMs * 2 ** (s.failures - 1));
  }

  /** The broker answered (any status other than UNAVAILABLE). */
  markUp(index: number): void {
    const s = this.#slots[index];
    if (s === undefined) return;
    s.failures = 0;
    s.downUntil = 0;
  }

  isDown(index: number): boolean {
    return (this.#slots[index]?.downUntil ?? 0) > this.#now();
  }
}
