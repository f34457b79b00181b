/** Mapping stored rows to the API's info types, and key-policy defaults and validation. */
import { KbError } from '../errors.ts';
import type { CustomerId, KeyVersion, OrgId, TenantId } from '../ids.ts';
import type { OekRow, OrgRow, PolicyRow, TekRow, TenantRow } from '../store/registry-store.ts';
import type { CekRow, CustomerRow } from '../store/tenant-store.ts';
import type {
  CustomerInfo,
  KeyInfo,
  KeyPolicy,
  KeyVersionInfo,
  OrgInfo,
  TenantInfo,
} from './key-broker-api.ts';

export const DEFAULT_ROTATION_PERIOD_S = 90 * 24 * 3600;

export function defaultPolicy(rotationPeriodS = DEFAULT_ROTATION_PERIOD_S): PolicyRow {
  return { rotationPeriodS, usageLimit: 0, minEnc: 1, minDec: 1 };
}

/** Merge a partial API policy into a stored one; versions must lie in [1, primary]. */
export function mergePolicy(cur: PolicyRow, p: Partial<KeyPolicy> | undefined, primary: number): PolicyRow {
  const out: PolicyRow = {
    rotationPeriodS: p?.rotationPeriodSeconds ?? cur.rotationPeriodS,
    usageLimit: p?.usageLimit ?? cur.usageLimit,
    minEnc: p?.minEncryptVersion ?? cur.minEnc,
    minDec: p?.minDecryptVersion ?? cur.minDec,
  };
  for (const [name, v] of [
    ['rotationPeriodSeconds', out.rotationPeriodS],
    ['usageLimit', out.usageLimit],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new KbError('INVALID_ARGUMENT', `${name} must be a non-negative integer`);
  }
  for (const [name, v] of [
    ['minEncryptVersion', out.minEnc],
    ['minDecryptVersion', out.minDec],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new KbError('INVALID_ARGUMENT', `${name} must be >= 1`);
    if (v > primary) throw new KbError('FAILED_PRECONDITION', `${name} above the primary version`);
  }
  if (out.minDec > out.minEnc)
    throw new KbError('FAILED_PRECONDITION', 'minDecryptVersion above minEncryptVersion');
  return out;
}

const policyOf = (p: PolicyRow): KeyPolicy => ({
  rotationPeriodSeconds: p.rotationPeriodS,
  usageLimit: p.usageLimit,
  minEncryptVersion: p.minEnc as KeyVersion,
  minDecryptVersion: p.minDec as KeyVersion,
});

const versionOf = (
  v: number,
  state: KeyVersionInfo['state'],
  createdAt: string,
  uses: number,
): KeyVersionInfo => ({
  version: v as KeyVersion,
  state,
  createdAt,
  uses,
});

export function orgInfo(o: OrgRow, oeks: readonly OekRow[]): OrgInfo {
  const key: KeyInfo = {
    level: 'org',
    primary: o.primaryOek as KeyVersion,
    versions: oeks.map((r) =>
      versionOf(r.version, r.state === 'retired' ? 'disabled' : r.state, r.createdAt, 0),
    ),
    policy: policyOf(o),
  };
  return { org: o.org as OrgId, enabled: o.enabled, createdAt: o.createdAt, key };
}

export function tenantKeyInfo(t: TenantRow, teks: readonly TekRow[]): KeyInfo {
  return {
    level: 'tenant',
    primary: t.primaryTek as KeyVersion,
    versions: teks.map((r) => versionOf(r.version, r.state, r.createdAt, r.uses)),
    policy: policyOf(t),
  };
}

export function tenantInfo(t: TenantRow, teks: readonly TekRow[]): TenantInfo {
  return {
    org: t.org as OrgId,
    tenant: t.tenant as TenantId,
    enabled: t.enabled,
    createdAt: t.createdAt,
    key: tenantKeyInfo(t, teks),
  };
}

export function customerKeyInfo(
  c: CustomerRow,
  ceks: readonly CekRow[],
  pendingUses: (v: number) => number,
): KeyInfo {
  return {
    level: 'customer',
    primary: c.primaryCek as KeyVersion,
    versions: ceks.map((r) => versionOf(r.version, r.state, r.createdAt, r.uses + pendingUses(r.version))),
    policy: policyOf(c),
  };
}

export function customerInfo(
  t: TenantRow,
  c: CustomerRow,
  ceks: readonly CekRow[],
  pendingUses: (v: number) => number,
): CustomerInfo {
  return {
    org: t.org as OrgId,
    tenant: t.tenant as TenantId,
    customer: c.customer as CustomerId,
    enabled: c.enabled,
    createdAt: c.createdAt,
    key: customerKeyInfo(c, ceks, pendingUses),
  };
}
