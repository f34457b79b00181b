/**
 * The open data-plane streams (EncryptStream/DecryptStream), by tenant and customer, so a shred
 * can abort them before its receipt is signed: an aborted stream zeroes its derived key and
 * refuses every later chunk. A stream leaves the set when it finishes, fails or is aborted; one
 * its caller abandons is held only weakly, so it never keeps the stream (or its key) alive.
 */
import { KbError } from '../errors.ts';

/** One open stream: `abort` zeroes its key; after it, the stream refuses every chunk. */
export interface LiveStream {
  readonly customer: string;
  abort(): void;
}

/** A tracked stream's chunk wrapper (see LiveStreams.track); holds its entry alive. */
export interface TrackedStream {
  run<R>(fn: () => R, last: boolean): R;
}

export class LiveStreams {
  /** tenantKey -> weak references to its open streams. */
  readonly #byTenant = new Map<string, Set<WeakRef<LiveStream>>>();
  /** Drops the reference of a stream its caller abandoned (collected without finishing). */
  readonly #gone = new FinalizationRegistry<{ tenantKey: string; ref: WeakRef<LiveStream> }>((h) =>
    this.#remove(h.tenantKey, h.ref),
  );

  /** Register an open stream of `tenantKey` (held weakly); the returned function removes it. */
  add(tenantKey: string, s: LiveStream): () => void {
    let set = this.#byTenant.get(tenantKey);
    if (set === undefined) {
      set = new Set();
      this.#byTenant.set(tenantKey, set);
    }
    const ref = new WeakRef(s);
    set.add(ref);
    this.#gone.register(s, { tenantKey, ref }, ref);
    return () => {
      this.#gone.unregister(ref);
      this.#remove(tenantKey, ref);
    };
  }

  /**
   * Track a stream of `tenantKey`: `run` wraps each chunk (NOT_FOUND once a shred aborted the
   * stream); the stream leaves the set after its last chunk (`last`) or an error.
   */
  track(tenantKey: string, customer: string, abort: () => void): TrackedStream {
    let aborted = false;
    const entry: LiveStream = {
      customer,
      abort: () => {
        aborted = true;
        abort();
      },
    };
    const remove = this.add(tenantKey, entry);
    return {
      run: <R>(fn: () => R, last: boolean): R => {
        // `entry` is referenced here, so the set's weak reference lives as long as the stream.
        if (aborted || entry.customer !== customer) throw new KbError('NOT_FOUND', 'tenant or customer');
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
    for (const ref of [...set]) {
      const s = ref.deref();
      if (s !== undefined && customer !== undefined && s.customer !== customer) continue;
      set.delete(ref);
      if (s === undefined) continue;
      this.#gone.unregister(ref);
      s.abort();
      n++;
    }
    if (set.size === 0) this.#byTenant.delete(tenantKey);
    return n;
  }

  /** Streams registered and not yet collected (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.#byTenant.values()) for (const ref of set) if (ref.deref() !== undefined) n++;
    return n;
  }

  #remove(tenantKey: string, ref: WeakRef<LiveStream>): void {
    const set = this.#byTenant.get(tenantKey);
    if (set === undefined) return;
    set.delete(ref);
    if (set.size === 0) this.#byTenant.delete(tenantKey);
  }
}
