/**
 * Per-tenant bounds on asymmetric keys (config `keys`), so one tenant cannot grow without limit:
 * keys per tenant, versions per key (versions are never deleted; Verify/OpenBox used to try every
 * one), and HSM-resident key pairs per tenant (ecdsa-p256 and HSM-backed composites make a token
 * object per version, and a full token stops every org's shred epochs). Beyond a bound the call is
 * LIMIT_REACHED (RESOURCE_EXHAUSTED) naming the bound and the config key that raises it.
 */
import { KbError } from '../errors.ts';
import type { TenantStore } from '../store/tenant-store.ts';

export interface AsymmetricKeyLimits {
  /** Named keys per tenant (its customers' keys included). */
  readonly maxKeysPerTenant: number;
  /** Versions per key; a rotation beyond is refused (create a new key instead). */
  readonly maxVersionsPerKey: number;
  /** Key versions whose private half lives in the HSM, per tenant. */
  readonly maxHsmKeysPerTenant: number;
  /** Verify/VerifyBatch/OpenBox without a version try at most this many newest enabled versions. */
  readonly maxVerifyVersions: number;
}

export const DEFAULT_ASYMMETRIC_KEY_LIMITS: AsymmetricKeyLimits = {
  maxKeysPerTenant: 1000,
  maxVersionsPerKey: 100,
  maxHsmKeysPerTenant: 100,
  maxVerifyVersions: 4,
};

/** Keys and HSM-resident versions a tenant file holds now. */
function counts(s: TenantStore): { keys: number; hsmKeys: number } {
  const r = s
    .st(
      `SELECT COUNT(DISTINCT key_id) AS keys,
              COALESCE(SUM(json_extract(meta, '$.hsmLabel') IS NOT NULL), 0) AS hsm
         FROM tenant_keys`,
    )
    .get() as { keys: number; hsm: number };
  return { keys: r.keys, hsmKeys: r.hsm };
}

/**
 * Refuse a new version (`version` 1: a new key) that would pass a bound. Called under the
 * tenant's key lock, before anything is generated.
 */
export function checkNewVersion(
  s: TenantStore,
  limits: AsymmetricKeyLimits,
  keyId: string,
  version: number,
  inHsm: boolean,
): void {
  if (version > limits.maxVersionsPerKey)
    throw new KbError(
      'LIMIT_REACHED',
      `key ${keyId} has ${limits.maxVersionsPerKey} versions, the most allowed per key (daemon config keys.maxVersionsPerKey; raise it or create a new key)`,
    );
  if (version !== 1 && !inHsm) return;
  const c = counts(s);
  if (version === 1 && c.keys >= limits.maxKeysPerTenant)
    throw new KbError(
      'LIMIT_REACHED',
      `the tenant has ${c.keys} asymmetric keys, the most allowed (daemon config keys.maxAsymmetricKeysPerTenant)`,
    );
  if (inHsm && c.hsmKeys >= limits.maxHsmKeysPerTenant)
    throw new KbError(
      'LIMIT_REACHED',
      `the tenant has ${c.hsmKeys} HSM-resident key versions, the most allowed (daemon config keys.maxHsmKeysPerTenant)`,
    );
}
