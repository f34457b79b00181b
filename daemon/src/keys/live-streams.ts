/**
 * The open data-plane streams (EncryptStream/DecryptStream), by tenant and customer, so a shred
 * can abort them before its receipt is signed: an aborted stream zeroes its derived key and
 * refuses every later chunk. A stream leaves the set when it finishes, fails or is aborted.
 */
import { KbError } from '../errors.ts';

/** One open stream: `abort` zeroes its key; after it, the stream refuses every chunk. */
export interface LiveStream {
  readonly customer: string;
  abort(): void;
}

/** A tracked stream's chunk wrapper (see LiveStreams.track). */
export interface TrackedStream {
  run<R>(fn: () => R, last: boolean): R;
}

export class LiveStreams {
  /** tenantKey -> its open streams. */
  readonly #byTenant = new Map<string, Set<LiveStream>>();

  /** Register an open stream of `tenantKey`; the returned function removes it. */
  add(tenantKey: string, s: LiveStream): () => void {
    let set = this.#byTenant.get(tenantKey);
    if (set === undefined) {
      set = new Set();
      this.#byTenant.set(tenantKey, set);
    }
    set.add(s);
    return () => this.#remove(tenantKey, s);
  }

  /**
   * Track a stream of `tenantKey`: `run` wraps each chunk (NOT_FOUND once a shred aborted the
   * stream); the stream leaves the set after its last chunk (`last`) or an error.
   */
  track(tenantKey: string, customer: string, abort: () => void): TrackedStream {
    let aborted = false;
    const remove = this.add(tenantKey, {
      customer,
      abort: () => {
        aborted = true;
        abort();
      },
    });
    return {
      run: <R>(fn: () => R, last: boolean): R => {
        if (aborted) throw new KbError('NOT_FOUND', 'tenant or customer');
        try {
          const r = fn();
          if (last) remove();
          return r;
        } catch (err) {
          remove();
          throw err;
        }
      },
    };
  }

  /** Abort the tenant's open streams (of one customer, if given); returns how many. */
  abort(tenantKey: string, customer?: string): number {
    const set = this.#byTenant.get(tenantKey);
    if (set === undefined) return 0;
    let n = 0;
    for (const s of [...set]) {
      if (customer !== undefined && s.customer !== customer) continue;
      set.delete(s);
      s.abort();
      n++;
    }
    if (set.size === 0) this.#byTenant.delete(tenantKey);
    return n;
  }

  /** Open streams in all (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.#byTenant.values()) n += set.size;
    return n;
  }

  #remove(tenantKey: string, s: LiveStream): void {
    const set = this.#byTenant.get(tenantKey);
    if (set === undefined) return;
    set.delete(s);
    if (set.size === 0) this.#byTenant.delete(tenantKey);
  }
}
