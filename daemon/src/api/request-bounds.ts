/**
 * Field checks at the API boundary, before any work: sizes, names and numbers. Every failure is
 * INVALID_ARGUMENT naming the field and the bound, never echoing the value.
 */
import { KbError } from '../errors.ts';
import { customerId, keyVersion, orgId, tenantId } from '../ids.ts';
import type { CustomerId, KeyVersion, OrgId, TenantId, TenantRef } from '../ids.ts';
import type { KeyPolicy } from '../keys/key-broker-api.ts';
import { ADMIN_SEGMENT } from './caller-identity.ts';

/** Per-field bounds (from config `limits`). */
export interface FieldLimits {
  readonly maxPlaintextBytes: number;
  readonly maxAadBytes: number;
  readonly maxBatchItems: number;
  readonly maxBatchBytes: number;
  readonly maxWrappedKeyBytes: number;
  readonly maxStreamMessageBytes: number;
  /** Versions a Verify/OpenBox without a version may try (its rate-limit cost per item). */
  readonly maxVerifyVersions?: number;
}

/** Ciphertext overhead allowed on top of the plaintext bound (header, salt, IV, tag). */
export const CIPHERTEXT_OVERHEAD = 1024;

/** A bytes field, at most `max` bytes. */
export function bytesField(name: string, v: unknown, max: number): Uint8Array {
  if (v === undefined || v === null) return new Uint8Array(0);
  if (!(v instanceof Uint8Array)) throw new KbError('INVALID_ARGUMENT', `${name} must be bytes`);
  if (v.length > max) throw new KbError('TOO_LARGE', `${name} exceeds ${max} bytes`);
  return v;
}

/** A bytes field that must not be empty. */
export function requiredBytes(name: string, v: unknown, max: number): Uint8Array {
  const b = bytesField(name, v, max);
  if (b.length === 0) throw new KbError('INVALID_ARGUMENT', `${name} is required`);
  return b;
}

/** Optional customer name: empty means the default customer. */
export function optionalCustomer(v: unknown): CustomerId | undefined {
  return v === undefined || v === '' ? undefined : customerId(v);
}

export function requiredOrg(v: unknown): OrgId {
  if (v === '' || v === undefined) throw new KbError('INVALID_ARGUMENT', 'org is required');
  return orgId(v);
}

export function requiredTenant(v: unknown): TenantId {
  if (v === '' || v === undefined) throw new KbError('INVALID_ARGUMENT', 'tenant is required');
  return tenantId(v);
}

/** A tenant name for a create: "admin" is reserved for admin identities. */
export function newTenantName(v: unknown): TenantId {
  const t = requiredTenant(v);
  if (t === ADMIN_SEGMENT)
    throw new KbError('INVALID_ARGUMENT', `tenant name "${ADMIN_SEGMENT}" is reserved`);
  return t;
}

export function requiredCustomer(v: unknown): CustomerId {
  if (v === '' || v === undefined) throw new KbError('INVALID_ARGUMENT', 'customer is required');
  return customerId(v);
}

export function tenantRefOf(org: unknown, tenant: unknown): TenantRef {
  return { org: requiredOrg(org), tenant: requiredTenant(tenant) };
}

export function versionField(v: unknown): KeyVersion {
  return keyVersion(v);
}

/** Data key length: 0 (default 32), 16 or 32. */
export function dataKeyLength(v: unknown): 16 | 32 {
  if (v === 0 || v === undefined || v === 32) return 32;
  if (v === 16) return 16;
  throw new KbError('INVALID_ARGUMENT', 'length must be 16 or 32');
}

/** A repeated field: 1..maxItems entries. */
export function batchItems<T>(name: string, v: unknown, maxItems: number): readonly T[] {
  if (!Array.isArray(v) || v.length === 0) throw new KbError('INVALID_ARGUMENT', `${name} must not be empty`);
  if (v.length > maxItems) throw new KbError('TOO_LARGE', `${name} exceeds ${maxItems} items`);
  return v as T[];
}

/** A count of batch items to make (EncapsulateBatch): 1..maxItems. */
export function batchCount(name: string, v: unknown, maxItems: number): number {
  if (v === undefined || v === null) throw new KbError('INVALID_ARGUMENT', `${name} is required`);
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw new KbError('INVALID_ARGUMENT', `${name} must be a whole number`);
  if (v < 1) throw new KbError('INVALID_ARGUMENT', `${name} must be at least 1`);
  if (v > maxItems) throw new KbError('TOO_LARGE', `${name} exceeds ${maxItems} items`);
  return v;
}

const TEN_YEARS = 10 * 365 * 86_400;

/** A KeyPolicyUpdate message (proto3 optional fields) as a partial KeyPolicy. */
export function policyUpdate(v: unknown): Partial<KeyPolicy> {
  if (v === null || v === undefined) return {};
  const m = v as Record<string, unknown>;
  const has = (f: string) =>
    m[`_${f}`] === f || (m[f] !== undefined && m[f] !== null && m[`_${f}`] === undefined);
  const out: { -readonly [K in keyof KeyPolicy]?: KeyPolicy[K] } = {};
  const num = (f: string, max: number) => {
    const n = m[f];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
      throw new KbError('INVALID_ARGUMENT', `policy.${f} must be an integer in [0, ${max}]`);
    }
    return n;
  };
  if (has('rotationPeriodSeconds')) out.rotationPeriodSeconds = num('rotationPeriodSeconds', TEN_YEARS);
  if (has('usageLimit')) out.usageLimit = num('usageLimit', Number.MAX_SAFE_INTEGER);
  if (has('minEncryptVersion')) out.minEncryptVersion = keyVersion(m.minEncryptVersion);
  if (has('minDecryptVersion')) out.minDecryptVersion = keyVersion(m.minDecryptVersion);
  return out;
}
