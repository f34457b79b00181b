/**
 * The versions and policy of recently used asymmetric keys. Every Keys call needs them, and
 * reading them takes three SQLite statements (30-70 µs here: after gRPC itself, the largest part
 * of a call's fixed cost). An entry serves only while its tenant store reports no write to its
 * keys since it was read (TenantStore.keysGeneration: every write to tenant_keys or
 * tenant_key_policies goes through AsymmetricKeyStore or TenantStore, and each reports it), and
 * never inside a transaction, so it can neither outlive a change nor keep one that rolls back.
 */
import type { PolicyRow } from '../store/registry-rows.ts';
import type { TenantStore } from '../store/tenant-store.ts';
import { AsymmetricKeyStore, type AsymmetricKeyRow } from './asymmetric-key-store.ts';
import { LruMap } from './lru-map.ts';

/** A key's stored state: every version, oldest first (none: no such key), and its policy. */
export interface KeyRows {
  readonly rows: readonly AsymmetricKeyRow[];
  readonly policy: Readonly<PolicyRow>;
}

interface Entry extends KeyRows {
  readonly generation: number;
}

/** Keys remembered across all tenant files (each entry holds a few rows and public keys). */
export const DEFAULT_KEY_ROW_ENTRIES = 1024;

export class AsymmetricKeyRowCache {
  readonly #m: LruMap<string, Entry>;
  /** A short id per store object: lookup keys stay short (a file path in each would cost more to hash). */
  readonly #ids = new WeakMap<TenantStore, number>();
  #nextId = 0;

  constructor(maxEntries = DEFAULT_KEY_ROW_ENTRIES) {
    this.#m = new LruMap(maxEntries);
  }

  get(s: TenantStore, keyId: string): KeyRows {
    const cacheable = !s.db.inTransaction;
    let id = this.#ids.get(s);
    if (id === undefined) this.#ids.set(s, (id = this.#nextId++));
    const k = `${id}:${keyId}`;
    const hit = cacheable ? this.#m.get(k) : undefined;
    // Another store object for the same path (the file was closed and reopened) has another id.
    if (hit !== undefined && hit.generation === s.keysGeneration) return hit;
    const e: Entry = {
      generation: s.keysGeneration,
      rows: AsymmetricKeyStore.versions(s, keyId),
      policy: AsymmetricKeyStore.policy(s, keyId),
    };
    if (cacheable) this.#m.set(k, e);
    return e;
  }

  get size(): number {
    return this.#m.size;
  }
}
