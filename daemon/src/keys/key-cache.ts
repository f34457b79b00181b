/**
 * Unwrapped keys in memory: TTL + size bound (LRU), zeroed on eviction, one unwrap shared by
 * concurrent misses of the same key (single-flight). An expired entry is kept, unusable, for
 * `degradedServeMs` more: while the HSM is unavailable it keeps serving (degraded mode).
 */
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';

export interface KeyCacheOptions {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly degradedServeMs: number;
  readonly now: () => number;
}

interface Entry {
  readonly secret: SecretBytes;
  readonly expiresAt: number;
}

export class KeyCache {
  readonly #o: KeyCacheOptions;
  readonly #map = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<SecretBytes>>();
  /** Set when a stale entry was served because the HSM was unavailable. */
  lastDegradedAt = 0;
  /** Fresh entries served, and loads started (each one an HSM unwrap or a derivation), since start. */
  hits = 0;
  misses = 0;

  constructor(o: KeyCacheOptions) {
    this.#o = o;
  }

  get size(): number {
    return this.#map.size;
  }

  /** A fresh entry or undefined; refreshes its LRU position. Never touches the loader. */
  peek(key: string): SecretBytes | undefined {
    const e = this.#map.get(key);
    if (!e || e.expiresAt <= this.#o.now()) return undefined;
    this.#map.delete(key);
    this.#map.set(key, e);
    this.hits++;
    return e.secret;
  }

  /**
   * The cached key or the loader's result. The returned SecretBytes belongs to the cache: use it
   * synchronously (it may be zeroed at a later eviction), never keep it across an await.
   */
  async get(key: string, load: () => Promise<Uint8Array>, hsmDown: () => boolean): Promise<SecretBytes> {
    const fresh = this.peek(key);
    if (fresh) return fresh;
    const stale = this.#map.get(key);
    const now = this.#o.now();
    const staleUsable = stale !== undefined && stale.expiresAt + this.#o.degradedServeMs > now;
    if (staleUsable && hsmDown()) {
      this.lastDegradedAt = now;
      return stale.secret;
    }
    let p = this.#inflight.get(key);
    if (!p) {
      this.misses++;
      p = (async () => {
        try {
          const bytes = await load();
          return this.#put(key, bytes);
        } finally {
          this.#inflight.delete(key);
        }
      })();
      this.#inflight.set(key, p);
    }
    try {
      return await p;
    } catch (err) {
      const s = this.#map.get(key);
      if (
        err instanceof KbError &&
        err.code === 'HSM_UNAVAILABLE' &&
        s &&
        s.expiresAt + this.#o.degradedServeMs > this.#o.now()
      ) {
        this.lastDegradedAt = this.#o.now();
        return s.secret;
      }
      throw err;
    }
  }

  #put(key: string, bytes: Uint8Array): SecretBytes {
    const old = this.#map.get(key);
    if (old) {
      this.#map.delete(key);
      old.secret.destroy();
    }
    const secret = new SecretBytes(bytes);
    this.#map.set(key, { secret, expiresAt: this.#o.now() + this.#o.ttlMs });
    while (this.#map.size > this.#o.maxEntries) {
      const [k, e] = this.#map.entries().next().value as [string, Entry];
      this.#map.delete(k);
      e.secret.destroy();
    }
    return secret;
  }

  /** Zero and drop one entry. */
  evict(key: string): void {
    const e = this.#map.get(key);
    this.#map.delete(key);
    e?.secret.destroy();
  }

  /** Zero and drop every entry whose key starts with `prefix`. */
  evictPrefix(prefix: string): number {
    let n = 0;
    for (const [k, e] of this.#map) {
      if (k.startsWith(prefix)) {
        this.#map.delete(k);
        e.secret.destroy();
        n++;
      }
    }
    return n;
  }

  /** Drop entries past TTL + degraded window (called from a timer; bounded by maxEntries anyway). */
  sweep(): void {
    const now = this.#o.now();
    for (const [k, e] of this.#map) {
      if (e.expiresAt + this.#o.degradedServeMs <= now) {
        this.#map.delete(k);
        e.secret.destroy();
      }
    }
  }

  clear(): void {
    for (const e of this.#map.values()) e.secret.destroy();
    this.#map.clear();
  }
}
