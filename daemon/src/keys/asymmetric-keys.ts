/**
 * Tenant asymmetric keys under the hierarchy (AsymmetricKeyApi): named keys with versions, the
 * newest the primary; private keys generated here and stored only wrapped under the tenant's TEK
 * in its SQLite file (asymmetric-key-material.ts lists the stored forms); unwrapped keys cached
 * with a TTL and a bound and destroyed on eviction. Crypto-shredding is the hierarchy's: the
 * tenant file goes, and the OEK that wrapped every copy of its TEK is destroyed in the HSM.
 * HSM-resident ECDSA keys are destroyed (C_DestroyObject) before the tenant's shred.
 */
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { TenantRef } from '../ids.ts';
import { buildJwks, type Jwk } from '../pqc/public-key-export.ts';
import type { TenantRow } from '../store/registry-rows.ts';
import { wrapTenantKey } from '../wire/wrapped-key-v1.ts';
import type * as Api from './asymmetric-key-api.ts';
import { AsymmetricKeyLoader } from './asymmetric-key-loader.ts';
import { generateKey, type AsymmetricRuntime } from './asymmetric-key-material.ts';
import {
  boxKem,
  checkContext,
  checkMessage,
  decapsulateWith,
  encapsulateTo,
  signManyWith,
  signWith,
  verifyWith,
} from './asymmetric-key-ops.ts';
import {
  AsymmetricKeyStore,
  asymmetricKeyId,
  keyInfo as info,
  purposeOf,
  type AsymmetricKeyRow,
  type AsymmetricKeyType,
} from './asymmetric-key-store.ts';
import { tenantKey, type Hierarchy } from './hierarchy.ts';
import type { ItemResult } from './key-broker-api.ts';
import type { KeyedMutex } from './keyed-mutex.ts';

export interface AsymmetricKeysOptions {
  readonly runtime: AsymmetricRuntime;
  /** Unwrapped private keys kept (default 5 min, 1,000 entries). */
  readonly cacheTtlMs?: number;
  readonly cacheMaxEntries?: number;
}

export { asymmetricKeyId };

export class AsymmetricKeys implements Api.AsymmetricKeyApi {
  readonly #h: Hierarchy;
  readonly #lock: KeyedMutex;
  readonly #hsm: Hsm;
  readonly #rt: AsymmetricRuntime;
  readonly #keys: AsymmetricKeyLoader;
  /** Tenants whose shred has begun: no new HSM keys for them. */
  readonly #shredding = new Set<string>();

  constructor(h: Hierarchy, lock: KeyedMutex, hsm: Hsm, o: AsymmetricKeysOptions) {
    this.#h = h;
    this.#lock = lock;
    this.#hsm = hsm;
    this.#rt = o.runtime;
    this.#keys = new AsymmetricKeyLoader(h, hsm, o.runtime, {
      ttlMs: o.cacheTtlMs ?? 5 * 60_000,
      maxEntries: o.cacheMaxEntries ?? 1000,
    });
  }

  get runtime(): AsymmetricRuntime {
    return this.#rt;
  }

  /** The caller's tenant: active, enabled, in an enabled org. */
  #tenant(ref: TenantRef): TenantRow {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    const o = this.#h.orgRow(ref.org);
    if (!o || !o.enabled || !t.enabled) throw new KbError('DISABLED', 'tenant');
    return t;
  }

  #rows(t: TenantRow, keyId: string): AsymmetricKeyRow[] {
    const rows = AsymmetricKeyStore.versions(this.#h.store(t), asymmetricKeyId(keyId));
    if (rows.length === 0) throw new KbError('NOT_FOUND', 'key');
    return rows;
  }

  /** One version (undefined: the primary), enabled, of the given purpose. */
  #version(rows: AsymmetricKeyRow[], version: number | undefined, purpose?: 'kem' | 'sig'): AsymmetricKeyRow {
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    if (purpose !== undefined && purposeOf(r.type) !== purpose)
      throw new KbError('INVALID_ARGUMENT', `${r.type} keys cannot be used for this operation`);
    if (r.state !== 'enabled') throw new KbError('DISABLED', 'key version');
    return r;
  }

  async createKey(
    ref: TenantRef,
    keyId: string,
    type: AsymmetricKeyType,
    opts: { hsmEcdsa?: boolean } = {},
  ): Promise<Api.AsymmetricKeyInfo> {
    const id = asymmetricKeyId(keyId);
    const hsmEcdsa = opts.hsmEcdsa === true;
    if (hsmEcdsa && type !== 'composite-mldsa65-ecdsa-p256')
      throw new KbError('INVALID_ARGUMENT', 'hsm_ecdsa applies to composite keys only');
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const t = this.#tenant(ref);
      if (AsymmetricKeyStore.versions(this.#h.store(t), id).length > 0)
        throw new KbError('ALREADY_EXISTS', 'key');
      await this.#addVersion(ref, id, 1, type, hsmEcdsa);
      return info(this.#rows(this.#tenant(ref), id));
    });
  }

  async rotateKey(ref: TenantRef, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const rows = this.#rows(this.#tenant(ref), keyId);
      const last = rows[rows.length - 1] as AsymmetricKeyRow;
      await this.#addVersion(ref, last.keyId, last.version + 1, last.type, last.meta.hsmLabel !== undefined);
      return info(this.#rows(this.#tenant(ref), keyId));
    });
  }

  /** Generate, wrap under the primary TEK (re-read under the tenant lock), insert. */
  async #addVersion(
    ref: TenantRef,
    keyId: string,
    version: number,
    type: AsymmetricKeyType,
    hsmEcdsa: boolean,
  ): Promise<void> {
    if (this.#shredding.has(tenantKey(ref.org, ref.tenant))) throw new KbError('NOT_FOUND', 'tenant');
    const g = await generateKey(this.#rt, this.#hsm, type, hsmEcdsa || type === 'ecdsa-p256');
    try {
      const t = this.#tenant(ref);
      const tek = await this.#h.tekCopy(t.org, t.tenant, t.primaryTek);
      try {
        const wrapped = wrapTenantKey(
          tek,
          { org: t.org, tenant: t.tenant, keyId, keyVersion: version, tekVersion: t.primaryTek },
          g.secret.expose(),
        );
        AsymmetricKeyStore.insert(this.#h.store(this.#tenant(ref)), {
          keyId,
          version,
          type,
          tekVersion: t.primaryTek,
          wrapped,
          publicKey: g.publicKey,
          state: 'enabled',
          createdAt: this.#h.d.now().toISOString(),
          meta: g.hsmLabel !== undefined ? { hsmLabel: g.hsmLabel } : {},
        });
      } finally {
        tek.fill(0);
      }
    } catch (err) {
      // A key that never made it into the file must not linger in the token.
      if (g.hsmLabel !== undefined) await this.#destroyHsmKey(g.hsmLabel).catch(() => undefined);
      throw err;
    } finally {
      g.secret.destroy();
    }
  }

  async setKeyVersionEnabled(
    ref: TenantRef,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<Api.AsymmetricKeyInfo> {
    return this.#lock.run(tenantKey(ref.org, ref.tenant), async () => {
      const t = this.#tenant(ref);
      const rows = this.#rows(t, keyId);
      const r = rows.find((x) => x.version === version);
      if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
      if (!enabled && r.version === (rows[rows.length - 1] as AsymmetricKeyRow).version)
        throw new KbError('FAILED_PRECONDITION', 'the primary version cannot be disabled; rotate first');
      AsymmetricKeyStore.setState(this.#h.store(t), r.keyId, version, enabled ? 'enabled' : 'disabled');
      if (!enabled) this.#keys.evict(t, r.keyId, version);
      return info(this.#rows(t, keyId));
    });
  }

  listKeys(ref: TenantRef): Promise<readonly Api.AsymmetricKeyInfo[]> {
    const byId = new Map<string, AsymmetricKeyRow[]>();
    for (const r of AsymmetricKeyStore.all(this.#h.store(this.#tenant(ref)))) {
      const list = byId.get(r.keyId) ?? [];
      list.push(r);
      byId.set(r.keyId, list);
    }
    return Promise.resolve([...byId.values()].map(info));
  }

  describeKey(ref: TenantRef, keyId: string): Promise<Api.AsymmetricKeyInfo> {
    return Promise.resolve(info(this.#rows(this.#tenant(ref), keyId)));
  }

  publicKey(ref: TenantRef, keyId: string, version?: number): Promise<Api.PublicKeyResult> {
    const rows = this.#rows(this.#tenant(ref), keyId);
    const r = version === undefined ? rows[rows.length - 1] : rows.find((x) => x.version === version);
    if (r === undefined) throw new KbError('NOT_FOUND', 'key version');
    return Promise.resolve({ type: r.type, version: r.version, publicKey: r.publicKey });
  }

  jwks(ref: TenantRef): Promise<{ keys: Jwk[] }> {
    const rows = AsymmetricKeyStore.all(this.#h.store(this.#tenant(ref))).filter(
      (r) => purposeOf(r.type) === 'sig' && r.state === 'enabled',
    );
    return Promise.resolve(
      buildJwks(rows.map((r) => ({ kind: r.type, publicKey: r.publicKey, kid: `${r.keyId}.${r.version}` }))),
    );
  }

  /** The type of a key, for authorisation (FIPS mode) before the call runs; never throws. */
  algorithmOf(ref: TenantRef, keyId: string): AsymmetricKeyType | undefined {
    try {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      return AsymmetricKeyStore.typeOf(this.#h.store(t), keyId);
    } catch (err) {
      // The call itself reports a missing tenant or a store failure, through the gate.
      void err;
      return undefined;
    }
  }

  async sign(
    ref: TenantRef,
    keyId: string,
    message: Uint8Array,
    context: Uint8Array,
  ): Promise<{ signature: Uint8Array; version: number }> {
    const t = this.#tenant(ref);
    const row = this.#version(this.#rows(t, keyId), undefined, 'sig');
    checkContext(row.type, context);
    checkMessage(row.type, message);
    const k = await this.#keys.get(t, row);
    return { signature: await k.use(() => signWith(this.#rt, k, message, context)), version: row.version };
  }

  async signBatch(
    ref: TenantRef,
    keyId: string,
    messages: readonly Uint8Array[],
    context: Uint8Array,
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }> {
    const t = this.#tenant(ref);
    const row = this.#version(this.#rows(t, keyId), undefined, 'sig');
    checkContext(row.type, context);
    for (const m of messages) checkMessage(row.type, m);
    const k = await this.#keys.get(t, row);
    return { version: row.version, results: await k.use(() => signManyWith(this.#rt, k, messages, context)) };
  }

  async verify(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    item: Api.VerifyItem,
    context: Uint8Array,
  ): Promise<{ valid: boolean; version: number }> {
    const [r] = await this.verifyBatch(ref, keyId, version, [item], context);
    if (r === undefined || !r.ok) throw r?.error ?? new KbError('INTERNAL');
    return r.value;
  }

  verifyBatch(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    items: readonly Api.VerifyItem[],
    context: Uint8Array,
  ): Promise<ItemResult<{ valid: boolean; version: number }>[]> {
    const rows = this.#rows(this.#tenant(ref), keyId);
    const candidates =
      version === undefined
        ? rows.filter((r) => r.state === 'enabled').reverse()
        : [this.#version(rows, version, 'sig')];
    const first = candidates[0];
    if (first === undefined) throw new KbError('DISABLED', 'key version');
    if (purposeOf(first.type) !== 'sig')
      throw new KbError('INVALID_ARGUMENT', `${first.type} keys do not verify`);
    checkContext(first.type, context);
    return Promise.resolve(
      items.map((it): ItemResult<{ valid: boolean; version: number }> => {
        try {
          for (const c of candidates) {
            if (verifyWith(this.#rt, c.type, c.publicKey, it.message, it.signature, context))
              return { ok: true, value: { valid: true, version: c.version } };
          }
          return { ok: true, value: { valid: false, version: 0 } };
        } catch (err) {
          if (err instanceof KbError && err.isUserError) return { ok: false, error: err };
          throw err;
        }
      }),
    );
  }

  async encapsulate(
    ref: TenantRef,
    keyId: string,
  ): Promise<{ cipherText: Uint8Array; sharedSecret: Uint8Array; version: number }> {
    const row = this.#version(this.#rows(this.#tenant(ref), keyId), undefined, 'kem');
    const e = await encapsulateTo(this.#rt, row.type, row.publicKey);
    return { ...e, version: row.version };
  }

  async decapsulate(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    cipherText: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; version: number }> {
    const t = this.#tenant(ref);
    const row = this.#version(this.#rows(t, keyId), version, 'kem');
    const k = await this.#keys.get(t, row);
    try {
      return {
        sharedSecret: await k.use(() => decapsulateWith(this.#rt, k, cipherText)),
        version: row.version,
      };
    } catch (err) {
      throw decryptionFailed(err);
    }
  }

  async sealBox(
    ref: TenantRef,
    keyId: string,
    plaintext: Uint8Array,
    infoBytes: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ sealed: Uint8Array; version: number }> {
    const row = this.#version(this.#rows(this.#tenant(ref), keyId), undefined, 'kem');
    const sealed = await this.#rt.boxes.seal(boxKem(row.type), row.publicKey, plaintext, infoBytes, aad);
    return { sealed, version: row.version };
  }

  async openBox(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    sealed: Uint8Array,
    infoBytes: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ plaintext: Uint8Array; version: number }> {
    const t = this.#tenant(ref);
    const rows = this.#rows(t, keyId);
    const kem = boxKem((rows[0] as AsymmetricKeyRow).type);
    const candidates =
      version === undefined
        ? rows.filter((r) => r.state === 'enabled').reverse()
        : [this.#version(rows, version, 'kem')];
    for (const row of candidates) {
      const k = await this.#keys.get(t, row);
      const box = k.box;
      if (box === undefined) continue;
      try {
        const plaintext = await k.use(() => this.#rt.boxes.open(kem, box, sealed, infoBytes, aad));
        return { plaintext, version: row.version };
      } catch (err) {
        if (!(err instanceof KbError) || !err.isUserError) throw err;
      }
    }
    throw decryptionFailed();
  }

  async #destroyHsmKey(label: string): Promise<void> {
    const ref = await this.#hsm.findKey(label, 'signing');
    if (ref !== undefined) await this.#hsm.destroyKey(ref);
  }

  /**
   * Before a tenant shred: refuse new keys, destroy its HSM-resident keys (their only copy is the
   * token object, so C_DestroyObject is the shred), zero its cached keys.
   */
  async beforeTenantShred(ref: TenantRef): Promise<void> {
    const k = tenantKey(ref.org, ref.tenant);
    this.#shredding.add(k);
    await this.#lock.run(k, async () => {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      for (const r of AsymmetricKeyStore.all(this.#h.store(t))) {
        if (r.meta.hsmLabel !== undefined) await this.#destroyHsmKey(r.meta.hsmLabel);
      }
      this.#keys.evictTenant(ref.org, ref.tenant);
    });
  }

  /** After a tenant shred (done or failed): zero anything cached meanwhile. */
  afterTenantShred(ref: TenantRef): void {
    this.#keys.evictTenant(ref.org, ref.tenant);
    this.#shredding.delete(tenantKey(ref.org, ref.tenant));
  }

  sweep(): void {
    this.#keys.sweep();
  }

  close(): void {
    this.#keys.clear();
  }
}
