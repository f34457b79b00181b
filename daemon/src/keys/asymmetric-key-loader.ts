/**
 * Loads tenant asymmetric private keys for use: cache hit, else unwrap the stored row under its
 * TEK, or its customer's CEK for a customer key (retrying when a TEK rotation rewrapped it meanwhile) and prepare it (asymmetric-key-material).
 * Every loading failure is the one opaque DECRYPTION_FAILED, except an HSM outage (retryable).
 */
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { TenantRow } from '../store/registry-rows.ts';
import { rowKekCopy, unwrapRowSecret } from './asymmetric-key-binding.ts';
import { AsymmetricKeyCache } from './asymmetric-key-cache.ts';
import { loadKey, type AsymmetricRuntime, type LoadedKey } from './asymmetric-key-material.ts';
import { AsymmetricKeyStore, type AsymmetricKeyRow } from './asymmetric-key-store.ts';
import type { Hierarchy } from './hierarchy.ts';

/** Key-loading failures are the opaque error, except an HSM outage (retryable, says so). */
function passUnavailable(err: unknown): KbError {
  if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN')) return err;
  return decryptionFailed(err);
}

export class AsymmetricKeyLoader {
  readonly #h: Hierarchy;
  readonly #hsm: Hsm;
  readonly #rt: AsymmetricRuntime;
  readonly #cache: AsymmetricKeyCache<LoadedKey>;

  constructor(h: Hierarchy, hsm: Hsm, rt: AsymmetricRuntime, o: { ttlMs: number; maxEntries: number }) {
    this.#h = h;
    this.#hsm = hsm;
    this.#rt = rt;
    this.#cache = new AsymmetricKeyCache({ ...o, now: () => h.d.now().getTime() });
  }

  static cacheKey(t: TenantRow, keyId: string, version: number): string {
    return `${t.org}/${t.tenant}/${keyId}/${version}`;
  }

  /** The loaded private key of a row (owned by the cache: do not keep it). */
  get(t: TenantRow, row: AsymmetricKeyRow): Promise<LoadedKey> {
    return this.#cache.get(AsymmetricKeyLoader.cacheKey(t, row.keyId, row.version), async () => {
      for (let attempt = 0; ; attempt++) {
        const r = AsymmetricKeyStore.get(this.#h.store(t), row.keyId, row.version);
        if (r === undefined) throw decryptionFailed();
        try {
          // Tenant-level rows are wrapped under a TEK version, customer rows under a CEK version;
          // a 0x13 row opens only if no field of it was edited (asymmetric-key-binding.ts).
          const kek = await rowKekCopy(this.#h, t, r);
          let secret: Uint8Array;
          try {
            secret = unwrapRowSecret(kek, t, r, AsymmetricKeyStore.policy(this.#h.store(t), r.keyId)).secret;
          } finally {
            kek.fill(0);
          }
          return await loadKey(this.#rt, this.#hsm, r.type, r.version, r.publicKey, secret, r.meta.hsmLabel);
        } catch (err) {
          // A TEK rotation (or a legacy row's upgrade) may have rewrapped the row meanwhile.
          const again = AsymmetricKeyStore.get(this.#h.store(t), row.keyId, row.version);
          const moved = again !== undefined && !Buffer.from(again.wrapped).equals(Buffer.from(r.wrapped));
          if (attempt < 3 && moved) continue;
          throw passUnavailable(err);
        }
      }
    });
  }

  evict(t: TenantRow, keyId: string, version: number): void {
    this.#cache.evict(AsymmetricKeyLoader.cacheKey(t, keyId, version));
  }

  /** Destroy every cached version of one key. */
  /** Keys held unwrapped now. */
  get size(): number {
    return this.#cache.size;
  }

  evictKey(org: string, tenant: string, keyId: string): void {
    this.#cache.evictPrefix(`${org}/${tenant}/${keyId}/`);
  }

  /** Destroy every cached key of a tenant. */
  evictTenant(org: string, tenant: string): void {
    this.#cache.evictPrefix(`${org}/${tenant}/`);
  }

  sweep(): void {
    this.#cache.sweep();
  }

  clear(): void {
    this.#cache.clear();
  }
}
