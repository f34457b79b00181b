/**
 * What ties a `tenant_keys` row to its wrapped private key (review M5): the row's public key,
 * algorithm, state, creation time and meta, and its key's policy (rotation period, usage limit,
 * minimum versions: `tenant_key_policies`, defaults when absent), are hashed into the binding
 * that the 0x13 wrap authenticates (wire/wrapped-key-v1.ts), next to org, tenant, customer, KEK
 * kind, key id and versions. A row edited in the file (public key swapped, disabled version
 * re-enabled, HSM label changed, moved to another customer, minimum version lowered) no longer
 * opens; the broker's own state and policy changes seal the rows again. Not covered: `uses` (a
 * counter flushed without the KEK) and the unread `kind` column.
 */
import { createHash } from 'node:crypto';
import {
  unwrapBoundKey,
  unwrapTenantKey,
  wrapBoundKey,
  wrapTenantKey,
  wrappedTypeOf,
  WrappedType,
  type BoundKeyIdentity,
} from '../wire/wrapped-key-v1.ts';
import { decryptionFailed } from '../errors.ts';
import type { PolicyRow, TenantRow } from '../store/registry-rows.ts';
import { purposeOf, type AsymmetricKeyRow } from './asymmetric-key-store.ts';
import type { Hierarchy } from './hierarchy.ts';

const DOMAIN = 'keybroker tkey row v1';

/** `u32 len ‖ bytes`, so adjacent fields cannot trade bytes. */
function field(h: ReturnType<typeof createHash>, b: Uint8Array | string): void {
  const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  h.update(len);
  h.update(bytes);
}

/** Meta as canonical JSON (sorted keys), so only a change of meaning changes the binding. */
function canonicalMeta(meta: AsymmetricKeyRow['meta']): string {
  const o = meta as Record<string, unknown>;
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, o[k]]),
    ),
  );
}

/** SHA-256 over the row fields the wrap does not name itself, and the key's policy. */
export function rowBinding(r: AsymmetricKeyRow, p: PolicyRow): Uint8Array {
  const h = createHash('sha256');
  const policy = `${p.rotationPeriodS}/${p.usageLimit}/${p.minEnc}/${p.minDec}`;
  for (const f of [
    DOMAIN,
    purposeOf(r.type),
    r.type,
    r.publicKey,
    r.state,
    r.createdAt,
    canonicalMeta(r.meta),
    policy,
  ])
    field(h, f);
  return new Uint8Array(h.digest());
}

/** The 0x13 identity of a row of tenant `t`. */
export function boundIdentity(
  t: { org: string; tenant: string },
  r: AsymmetricKeyRow,
  p: PolicyRow,
): BoundKeyIdentity {
  const tenantLevel = r.customer === '';
  return {
    org: t.org,
    tenant: t.tenant,
    kek: tenantLevel ? 'tek' : 'cek',
    customer: r.customer,
    keyId: r.keyId,
    keyVersion: r.version,
    kekVersion: tenantLevel ? r.tekVersion : r.cekVersion,
    binding: rowBinding(r, p),
  };
}

/** The wrapping key version of a row: its TEK version, or its CEK version for a customer key. */
export const kekVersionOf = (r: AsymmetricKeyRow): number =>
  r.customer === '' ? r.tekVersion : r.cekVersion;

/** A copy (the caller zeroes it) of the key that wraps a row: its TEK version, or its customer's CEK version. */
export function rowKekCopy(h: Hierarchy, t: TenantRow, r: AsymmetricKeyRow): Promise<Uint8Array> {
  return r.customer === ''
    ? h.tekCopy(t.org, t.tenant, r.tekVersion)
    : h.cekCopy(t, r.customer, r.cekVersion);
}

/** Wrap a row's secret as 0x13 under its TEK, or (derived inside) its customer's CEK. */
export function wrapRowSecret(
  kek: Uint8Array,
  t: { org: string; tenant: string },
  r: AsymmetricKeyRow,
  p: PolicyRow,
  secret: Uint8Array,
): Uint8Array {
  return wrapBoundKey(kek, boundIdentity(t, r, p), secret);
}

/**
 * Unwrap a row's secret: 0x13 checks the whole row; a legacy 0x11 row checks only its identity
 * (`legacy: true`: the caller must check the public key against the secret before trusting it).
 */
export function unwrapRowSecret(
  kek: Uint8Array,
  t: { org: string; tenant: string },
  r: AsymmetricKeyRow,
  p: PolicyRow,
): { secret: Uint8Array; legacy: boolean } {
  switch (wrappedTypeOf(r.wrapped)) {
    case WrappedType.boundTenantKey:
      return { secret: unwrapBoundKey(kek, boundIdentity(t, r, p), r.wrapped), legacy: false };
    case WrappedType.tenantKey: {
      const id = {
        org: t.org,
        tenant: t.tenant,
        keyId: r.keyId,
        keyVersion: r.version,
        tekVersion: kekVersionOf(r),
      };
      return { secret: unwrapTenantKey(kek, id, r.wrapped), legacy: true };
    }
    default:
      throw decryptionFailed();
  }
}

/**
 * A tenant-level row rewrapped under TEK version `next` (TEK rotation). A 0x13 row is opened
 * (checking the row) and sealed again; a legacy 0x11 row stays 0x11 (its public key is checked
 * and the row upgraded at its first use, which needs the asymmetric runtime this layer lacks).
 */
export function rewrapRowUnderTek(
  t: { org: string; tenant: string },
  r: AsymmetricKeyRow,
  p: PolicyRow,
  oldTek: Uint8Array,
  newTek: Uint8Array,
  next: number,
): { keyId: string; version: number; tekVersion: number; wrapped: Uint8Array } {
  const { secret, legacy } = unwrapRowSecret(oldTek, t, r, p);
  try {
    const wrapped = legacy
      ? wrapTenantKey(
          newTek,
          { org: t.org, tenant: t.tenant, keyId: r.keyId, keyVersion: r.version, tekVersion: next },
          secret,
        )
      : wrapRowSecret(newTek, t, { ...r, tekVersion: next }, p, secret);
    return { keyId: r.keyId, version: r.version, tekVersion: next, wrapped };
  } finally {
    secret.fill(0);
  }
}
