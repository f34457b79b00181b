/**
 * A bounded pool of PKCS#11 sessions: one call in flight per session (PKCS#11 sessions are not
 * re-entrant), waiters queue in FIFO order, and a full queue fails fast with POOL_EXHAUSTED
 * instead of letting latency grow without bound.
 */
import { KbError } from '../errors.ts';

interface Waiter<T> {
  resolve(item: T): void;
  reject(err: KbError): void;
}

/** Generic so it can be unit-tested without a token; T is a session handle in practice. */
export class SessionPool<T> {
  readonly #free: T[];
  readonly #waiters: Waiter<T>[] = [];
  readonly #maxWaiters: number;
  readonly #total: number;
  #failure: KbError | undefined;

  constructor(items: readonly T[], maxWaiters: number) {
    this.#free = [...items];
    this.#total = items.length;
    this.#maxWaiters = maxWaiters;
  }

  get total(): number {
    return this.#total;
  }

  get inUse(): number {
    return this.#total - this.#free.length;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** A free session, or a place in the queue; rejects with POOL_EXHAUSTED when the queue is full. */
  acquire(): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const item = this.#free.pop();
    if (item !== undefined) return Promise.resolve(item);
    if (this.#waiters.length >= this.#maxWaiters) {
      return Promise.reject(new KbError('POOL_EXHAUSTED', 'HSM session pool queue full'));
    }
    return new Promise<T>((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Give a session back (or its replacement, when the old one had to be closed). */
  release(item: T): void {
    if (this.#failure) {
      this.#free.push(item);
      return;
    }
    const next = this.#waiters.shift();
    if (next) next.resolve(item);
    else this.#free.push(item);
  }

  /** Reject every waiter and every later acquire with `err` (device gone, shutting down). */
  fail(err: KbError): void {
    this.#failure = err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  /** The sessions currently free; after `fail`, once inUse is 0, that is all of them. */
  freeItems(): readonly T[] {
    return this.#free;
  }
}
