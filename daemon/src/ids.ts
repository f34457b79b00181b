/** Branded identifiers: an OrgId is never confused with a TenantId or a bare string. */
import { KbError } from './errors.ts';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type OrgId = Brand<string, 'OrgId'>;
export type TenantId = Brand<string, 'TenantId'>;
export type CustomerId = Brand<string, 'CustomerId'>;
/** Key versions start at 1 and only move forward. */
export type KeyVersion = Brand<number, 'KeyVersion'>;

/** Names are path- and SPIFFE-safe: they appear in file names and identity URIs. */
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function parseName<T>(kind: string, s: unknown): T {
  if (typeof s !== 'string' || !NAME.test(s)) {
    throw new KbError('INVALID_ARGUMENT', `${kind} must match ${NAME.source}`);
  }
  return s as T;
}

export const orgId = (s: unknown): OrgId => parseName<OrgId>('org', s);
export const tenantId = (s: unknown): TenantId => parseName<TenantId>('tenant', s);
export const customerId = (s: unknown): CustomerId => parseName<CustomerId>('customer', s);

export function keyVersion(n: unknown): KeyVersion {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 0xffff_ffff) {
    throw new KbError('INVALID_ARGUMENT', 'key version must be an integer in [1, 2^32-1]');
  }
  return n as KeyVersion;
}

/** A tenant is only meaningful inside its org. */
export interface TenantRef {
  readonly org: OrgId;
  readonly tenant: TenantId;
}

/** The default customer every tenant gets. */
export const DEFAULT_CUSTOMER = 'default' as CustomerId;
