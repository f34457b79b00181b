/**
 * Row mapping from PostgreSQL rows to the row types the SQLite stores define (the same types, so
 * the keys layer reads either backend alike). PostgreSQL gives BOOLEAN and INTEGER[] natively,
 * BYTEA as Buffer (copied into a plain Uint8Array, as the SQLite stores do) and BIGINT as a
 * number (pg-connection.ts).
 */
import type { EpochRow, OekRow, OrgRow, PolicyRow, ShredRow, TekRow, TenantRow } from '../registry-rows.ts';
import type { CekRow, CustomerRow, TenantKeyRow } from '../tenant-store.ts';
import type { PgRaw } from './pg-connection.ts';

/**
 * One row of `tenant_keys` as stored (the keys layer's AsymmetricKeyRow is built from it; store/
 * does not import keys/): `meta` is the JSON text, `alg` the key type name.
 */
export interface TenantKeyVersionRow {
  readonly keyId: string;
  readonly version: number;
  readonly kind: string;
  readonly alg: string;
  /** '' for a tenant-level key; else the customer whose CEK wraps it. */
  readonly customer: string;
  readonly tekVersion: number;
  readonly cekVersion: number;
  readonly uses: number;
  readonly wrapped: Uint8Array;
  readonly publicKey: Uint8Array | null;
  readonly state: string;
  readonly createdAt: string;
  readonly meta: string;
}

const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Buffer);
const orNull = <T>(v: unknown): T | null => (v as T | null) ?? null;

export const policyOf = (r: PgRaw): PolicyRow => ({
  rotationPeriodS: r.rotation_period_s as number,
  usageLimit: r.usage_limit as number,
  minEnc: r.min_enc as number,
  minDec: r.min_dec as number,
});
export const orgOf = (r: PgRaw): OrgRow => ({
  ...policyOf(r),
  org: r.org as string,
  enabled: r.enabled as boolean,
  createdAt: r.created_at as string,
  primaryOek: r.primary_oek as number,
});
export const oekOf = (r: PgRaw): OekRow => ({
  org: r.org as string,
  version: r.version as number,
  hsmLabel: r.hsm_label as string,
  state: r.state as OekRow['state'],
  createdAt: r.created_at as string,
  destroyedAt: orNull<string>(r.destroyed_at),
});
export const tenantOf = (r: PgRaw): TenantRow => ({
  ...policyOf(r),
  org: r.org as string,
  tenant: r.tenant as string,
  enabled: r.enabled as boolean,
  state: r.state as TenantRow['state'],
  createdAt: r.created_at as string,
  primaryTek: r.primary_tek as number,
  fileName: r.file_name as string,
});
export const tekOf = (r: PgRaw): TekRow => ({
  org: r.org as string,
  tenant: r.tenant as string,
  version: r.version as number,
  oekVersion: r.oek_version as number,
  wrapped: bytes(r.wrapped),
  state: r.state as TekRow['state'],
  createdAt: r.created_at as string,
  uses: r.uses as number,
});
export const epochOf = (r: PgRaw): EpochRow => ({
  id: r.id as number,
  org: r.org as string,
  state: r.state as EpochRow['state'],
  destroyOld: r.destroy_old as boolean,
  newOek: r.new_oek as number,
  newLabel: r.new_label as string,
  oldOeks: r.old_oeks as number[],
  createdAt: r.created_at as string,
  completedAt: orNull<string>(r.completed_at),
});
export const shredOf = (r: PgRaw): ShredRow => ({
  id: r.id as number,
  kind: r.kind as ShredRow['kind'],
  org: r.org as string,
  tenant: r.tenant as string,
  customer: orNull<string>(r.customer),
  state: r.state as ShredRow['state'],
  requestedAt: r.requested_at as string,
  detail: r.detail as string,
  epochId: orNull<number>(r.epoch_id),
  receipt: orNull<string>(r.receipt),
});
export const customerOf = (r: PgRaw): CustomerRow => ({
  ...policyOf(r),
  customer: r.customer as string,
  enabled: r.enabled as boolean,
  state: r.state as CustomerRow['state'],
  createdAt: r.created_at as string,
  primaryCek: r.primary_cek as number,
});
export const cekOf = (r: PgRaw): CekRow => ({
  customer: r.customer as string,
  version: r.version as number,
  tekVersion: r.tek_version as number,
  wrapped: bytes(r.wrapped),
  state: r.state as CekRow['state'],
  createdAt: r.created_at as string,
  uses: r.uses as number,
});
export const tenantKeyOf = (r: PgRaw): TenantKeyRow => ({
  keyId: r.key_id as string,
  version: r.version as number,
  tekVersion: r.tek_version as number,
  wrapped: bytes(r.wrapped),
});
export const tenantKeyVersionOf = (r: PgRaw): TenantKeyVersionRow => ({
  keyId: r.key_id as string,
  version: r.version as number,
  kind: r.kind as string,
  alg: r.alg as string,
  customer: r.customer as string,
  tekVersion: r.tek_version as number,
  cekVersion: r.cek_version as number,
  uses: r.uses as number,
  wrapped: bytes(r.wrapped),
  publicKey: r.public_key === null ? null : bytes(r.public_key),
  state: r.state as string,
  createdAt: r.created_at as string,
  meta: r.meta as string,
});
