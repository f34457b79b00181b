/**
 * Unwrapped asymmetric private keys in memory, like CEKs (key-cache.ts): TTL and size bound (LRU),
 * destroyed (seeds zeroed, engine handles freed) on eviction, one unwrap shared by concurrent
 * misses. Entries are engine-prepared handles rather than bytes, so the hot path never re-expands
 * a seed; that is why this is not the hierarchy's byte cache.
 */
import { decryptionFailed } from '../errors.ts';
import { ShreddedWhileLoading } from './key-cache.ts';

/** Something the cache owns and must destroy when it drops it. */
export interface Destroyable {
  destroy(): void;
}

interface Entry<V> {
  readonly value: V;
  readonly expiresAt: number;
}

export interface AsymmetricKeyCacheOptions {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly now: () => number;
}

export class AsymmetricKeyCache<V extends Destroyable> {
  readonly #o: AsymmetricKeyCacheOptions;
  readonly #map = new Map<string, Entry<V>>();
  readonly #inflight = new Map<string, Promise<V>>();
  /**
   * Prefixes evicted while loads were in flight (with a sequence number): a load that started
   * before such an eviction of its prefix (a shred) is destroyed instead of cached. Cleared
   * whenever nothing is in flight.
   */
  #evictions: { seq: number; prefix: string }[] = [];
  #seq = 0;

  constructor(o: AsymmetricKeyCacheOptions) {
    this.#o = o;
  }

  get size(): number {
    return this.#map.size;
  }

  /**
   * The cached value or the loader's. A value may be destroyed by a later eviction, so callers
   * use it without awaiting anything in between, or hold their own reference count (see users).
   */
  async get(key: string, load: () => Promise<V>): Promise<V> {
    const e = this.#map.get(key);
    if (e !== undefined && e.expiresAt > this.#o.now()) {
      this.#map.delete(key);
      this.#map.set(key, e);
      return e.value;
    }
    if (e !== undefined) this.evict(key);
    let p = this.#inflight.get(key);
    if (p === undefined) {
      const since = this.#seq;
      p = load()
        .then((v) => {
          if (this.#evictions.some((e) => e.seq > since && key.startsWith(e.prefix))) {
            v.destroy();
            throw decryptionFailed(new ShreddedWhileLoading(key));
          }
          return this.#put(key, v);
        })
        .finally(() => {
          this.#inflight.delete(key);
          if (this.#inflight.size === 0) this.#evictions = [];
        });
      this.#inflight.set(key, p);
    }
    return p;
  }

  #put(key: string, value: V): V {
    this.evict(key);
    this.#map.set(key, { value, expiresAt: this.#o.now() + this.#o.ttlMs });
    while (this.#map.size > this.#o.maxEntries) {
      const oldest = this.#map.keys().next().value as string;
      this.evict(oldest);
    }
    return value;
  }

  evict(key: string): void {
    const e = this.#map.get(key);
    if (e === undefined) return;
    this.#map.delete(key);
    e.value.destroy();
  }

  /** Destroy every entry whose key starts with `prefix` (a tenant, or one key's versions). */
  evictPrefix(prefix: string): number {
    if (this.#inflight.size > 0) this.#evictions.push({ seq: ++this.#seq, prefix });
    let n = 0;
    for (const k of [...this.#map.keys()]) {
      if (k.startsWith(prefix)) {
        this.evict(k);
        n++;
      }
    }
    return n;
  }

  /** Drop expired entries (timer). */
  sweep(): void {
    const now = this.#o.now();
    for (const [k, e] of [...this.#map]) if (e.expiresAt <= now) this.evict(k);
  }

  clear(): void {
    for (const k of [...this.#map.keys()]) this.evict(k);
  }
}
