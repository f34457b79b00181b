/**
 * Unwrapped keys in memory: TTL + size bound (LRU), zeroed on eviction, one unwrap shared by
 * concurrent misses of the same key (single-flight). An expired entry is kept, unusable, for
 * `degradedServeMs` more: while the HSM is unavailable it keeps serving (degraded mode).
 */
import { decryptionFailed, KbError } from '../errors.ts';
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

/** The cause of a load refused because its scope was shredded meanwhile (see KeyCache.get). */
export class ShreddedWhileLoading extends Error {}

/** Whether `err` is a load refused by a shred (a retry re-reads the rows and sees the truth). */
export function isShreddedWhileLoading(err: unknown): boolean {
  return err instanceof KbError && err.cause instanceof ShreddedWhileLoading;
}

export class KeyCache {
  readonly #o: KeyCacheOptions;
  readonly #map = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<SecretBytes>>();
  /**
   * Shred generation per scope (a tenant "org/tenant" or a customer "org/tenant/customer"):
   * bumped at every shred eviction, so a load that started before it cannot insert after it.
   */
  readonly #gens = new Map<string, number>();
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

  /** Bump the shred generation of `scope`: loads of keys in it that are in flight are refused. */
  bump(scope: string): void {
    this.#gens.set(scope, (this.#gens.get(scope) ?? 0) + 1);
  }

  #generation(scopes: readonly string[]): string {
    return scopes.map((s) => this.#gens.get(s) ?? 0).join('/');
  }

  /**
   * The cached key or the loader's result; `scopes` are the shred scopes the key belongs to. A
   * load during which one of them was shredded is zeroed and refused (decryptionFailed()). The
   * returned SecretBytes belongs to the cache: use it synchronously (it may be zeroed at a later
   * eviction), never keep it across an await.
   */
  async get(
    key: string,
    load: () => Promise<Uint8Array>,
    hsmDown: () => boolean,
    scopes: readonly string[] = [],
  ): Promise<SecretBytes> {
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
      const gen = this.#generation(scopes);
      p = (async () => {
        try {
          const bytes = await load();
          if (this.#generation(scopes) !== gen) {
            // A shred evicted this scope while we loaded: the key must not outlive its receipt.
            bytes.fill(0);
            throw decryptionFailed(new ShreddedWhileLoading(key));
          }
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
