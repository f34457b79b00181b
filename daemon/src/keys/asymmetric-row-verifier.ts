/**
 * Checks `tenant_keys` rows against their wrapped private keys before anything trusts them
 * (review M5): Verify, JWKS, Encapsulate, SealBox and GetPublicKey use the stored public key
 * without loading the private key, so a row edited in the file must be refused here. A 0x13 row
 * is checked by opening its wrap (the AAD binds the row, asymmetric-key-binding.ts). A legacy
 * 0x11 row binds only its identity: it is accepted once its secret derives its stored public key
 * (and names its stored HSM label), and is then rewrapped as 0x13 on the spot (compare-and-set),
 * so every row is upgraded by its first use. Each row is checked once per process: by object
 * (the row cache hands out the same objects until a write) and by a digest of its bytes.
 */
import { createHash } from 'node:crypto';
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import type { PolicyRow, TenantRow } from '../store/registry-rows.ts';
import {
  boundIdentity,
  kekVersionOf,
  rowKekCopy,
  unwrapRowSecret,
  wrapRowSecret,
} from './asymmetric-key-binding.ts';
import { loadKey, type AsymmetricRuntime } from './asymmetric-key-material.ts';
import { AsymmetricKeyStore, type AsymmetricKeyRow } from './asymmetric-key-store.ts';
import type { Hierarchy } from './hierarchy.ts';
import { LruMap } from './lru-map.ts';

/** Rows remembered as checked (by digest) across row-cache refreshes. */
const CHECKED_ROWS = 16_384;

/** The error of a row that fails its check: the store was edited or corrupted, not the caller's fault. */
export function keyIntegrityFailed(r: AsymmetricKeyRow, cause?: unknown): KbError {
  return new KbError(
    'KEY_INTEGRITY',
    `key ${r.keyId} version ${r.version}`,
    cause === undefined ? undefined : { cause },
  );
}

/** Outages stay retryable; everything else about a row that does not open is an integrity failure. */
function passUnavailable(r: AsymmetricKeyRow, err: unknown): KbError {
  if (
    err instanceof KbError &&
    (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN' || err.code === 'KEY_INTEGRITY')
  )
    return err;
  return keyIntegrityFailed(r, err);
}

export class AsymmetricRowVerifier {
  readonly #h: Hierarchy;
  readonly #hsm: Hsm;
  readonly #rt: AsymmetricRuntime;
  /** Rows (the row cache's objects) already checked, with the policy they were checked with. */
  readonly #seen = new WeakMap<AsymmetricKeyRow, string>();
  readonly #checked = new LruMap<string, string>(CHECKED_ROWS);

  constructor(h: Hierarchy, hsm: Hsm, rt: AsymmetricRuntime) {
    this.#h = h;
    this.#hsm = hsm;
    this.#rt = rt;
  }

  /** Throws KEY_INTEGRITY (or an HSM outage) unless every row, with its key's policy `p`, is intact. */
  async verify(t: TenantRow, rows: readonly AsymmetricKeyRow[], p: PolicyRow): Promise<void> {
    const pk = policyKey(p);
    for (const r of rows) {
      if (this.#seen.get(r) === pk) continue;
      const k = `${t.org}/${t.tenant}/${r.keyId}/${r.version}`;
      const d = digest(t, r, p);
      if (this.#checked.get(k) !== d) {
        await this.#check(t, r, p);
        this.#checked.set(k, d);
      }
      this.#seen.set(r, pk);
    }
  }

  async #kek(t: TenantRow, r: AsymmetricKeyRow): Promise<Uint8Array> {
    // A KEK that does not load (its customer or OEK shredded, a restored backup) is not this
    // row's fault: the one opaque error, as when loading the private key (or the outage).
    try {
      return await rowKekCopy(this.#h, t, r);
    } catch (err) {
      if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN'))
        throw err;
      throw decryptionFailed(err);
    }
  }

  async #check(t: TenantRow, r: AsymmetricKeyRow, p: PolicyRow): Promise<void> {
    const kek = await this.#kek(t, r);
    try {
      const { secret, legacy } = unwrapRowSecret(kek, t, r, p);
      if (!legacy) {
        secret.fill(0);
        return;
      }
      // A legacy row binds only its identity: its public key must be the secret's own.
      const copy = Uint8Array.from(secret);
      try {
        const k = await loadKey(this.#rt, this.#hsm, r.type, r.version, r.publicKey, secret, r.meta.hsmLabel);
        k.destroy();
        const upgraded = wrapRowSecret(kek, t, r, p, copy);
        AsymmetricKeyStore.replaceWrapped(this.#h.store(t), r, upgraded);
      } finally {
        copy.fill(0);
      }
    } catch (err) {
      throw passUnavailable(r, err);
    } finally {
      kek.fill(0);
    }
  }

  /** Each row sealed again for `next` (its state and the key's policy `to`), from `from`. */
  async #reseal(
    t: TenantRow,
    rows: readonly AsymmetricKeyRow[],
    from: PolicyRow,
    to: PolicyRow,
    next: (r: AsymmetricKeyRow) => AsymmetricKeyRow,
  ): Promise<{ row: AsymmetricKeyRow; wrapped: Uint8Array; state: AsymmetricKeyRow['state'] }[]> {
    await this.verify(t, rows, from);
    const out = [];
    for (const r of rows) {
      // A legacy row was upgraded by the check: reseal what is stored now.
      const cur = AsymmetricKeyStore.get(this.#h.store(t), r.keyId, r.version);
      if (cur === undefined) throw new KbError('NOT_FOUND', 'key version');
      const kek = await this.#kek(t, cur);
      try {
        const { secret } = unwrapRowSecret(kek, t, cur, from);
        try {
          const n = next(cur);
          out.push({ row: cur, wrapped: wrapRowSecret(kek, t, n, to, secret), state: n.state });
        } finally {
          secret.fill(0);
        }
      } catch (err) {
        throw passUnavailable(cur, err);
      } finally {
        kek.fill(0);
      }
    }
    return out;
  }

  #apply(
    t: TenantRow,
    sealed: readonly { row: AsymmetricKeyRow; wrapped: Uint8Array; state: AsymmetricKeyRow['state'] }[],
  ) {
    for (const x of sealed)
      if (!AsymmetricKeyStore.replaceWrapped(this.#h.store(t), x.row, x.wrapped, x.state))
        throw new KbError('INTERNAL', undefined, { detail: 'key row changed while it was sealed again' });
  }

  /**
   * Set a version's state (enable/disable): the binding covers it, so the row is sealed again
   * under the same KEK. Caller holds the tenant lock.
   */
  async rebindState(
    t: TenantRow,
    r: AsymmetricKeyRow,
    p: PolicyRow,
    state: AsymmetricKeyRow['state'],
  ): Promise<void> {
    const sealed = await this.#reseal(t, [r], p, p, (cur) => ({ ...cur, state }));
    this.#apply(t, sealed);
  }

  /**
   * Set a key's policy: every version is bound to it, so all are sealed again, and the policy
   * row and the rows change in one transaction. Caller holds the tenant lock.
   */
  async rebindPolicy(
    t: TenantRow,
    rows: readonly AsymmetricKeyRow[],
    from: PolicyRow,
    to: PolicyRow,
  ): Promise<void> {
    const sealed = await this.#reseal(t, rows, from, to, (cur) => cur);
    const s = this.#h.store(t);
    s.tx(() => {
      AsymmetricKeyStore.setPolicy(s, (rows[0] as AsymmetricKeyRow).keyId, to);
      this.#apply(t, sealed);
    });
  }
}

const policyKey = (p: PolicyRow): string => `${p.rotationPeriodS}/${p.usageLimit}/${p.minEnc}/${p.minDec}`;

/** Everything the check depends on: the bound identity (with the policy) and the wrapped bytes. */
function digest(t: TenantRow, r: AsymmetricKeyRow, p: PolicyRow): string {
  const id = boundIdentity(t, r, p);
  return createHash('sha256')
    .update(id.binding)
    .update(`${id.kek}/${id.customer}/${kekVersionOf(r)}/`)
    .update(r.wrapped)
    .digest('hex');
}
