/** Row types of the registry database and their mapping from SQLite rows (snake_case). */

export interface PolicyRow {
  readonly rotationPeriodS: number;
  readonly usageLimit: number;
  readonly minEnc: number;
  readonly minDec: number;
}
export interface OrgRow extends PolicyRow {
  readonly org: string;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly primaryOek: number;
}
export interface OekRow {
  readonly org: string;
  readonly version: number;
  readonly hsmLabel: string;
  readonly state: 'enabled' | 'retired' | 'destroyed';
  readonly createdAt: string;
  readonly destroyedAt: string | null;
}
export interface TenantRow extends PolicyRow {
  readonly org: string;
  readonly tenant: string;
  readonly enabled: boolean;
  readonly state: 'active' | 'destroyed';
  readonly createdAt: string;
  readonly primaryTek: number;
  readonly fileName: string;
}
export interface TekRow {
  readonly org: string;
  readonly tenant: string;
  readonly version: number;
  readonly oekVersion: number;
  readonly wrapped: Uint8Array;
  readonly state: 'enabled' | 'disabled';
  readonly createdAt: string;
  readonly uses: number;
}
export interface EpochRow {
  readonly id: number;
  readonly org: string;
  readonly state: 'generating' | 'rewrapping' | 'destroying' | 'done';
  readonly destroyOld: boolean;
  readonly newOek: number;
  readonly newLabel: string;
  /** OEK versions this epoch retires (and destroys when destroyOld). */
  readonly oldOeks: readonly number[];
  readonly createdAt: string;
  readonly completedAt: string | null;
}
export interface ShredRow {
  readonly id: number;
  readonly kind: 'tenant' | 'customer';
  readonly org: string;
  readonly tenant: string;
  readonly customer: string | null;
  readonly state: 'tek-rotation' | 'epoch' | 'done';
  readonly requestedAt: string;
  /** JSON: what was destroyed (versions), filled by the shredder. */
  readonly detail: string;
  readonly epochId: number | null;
  readonly receipt: string | null;
}

/** A row as better-sqlite3 returns it. */
export type Raw = Record<string, unknown>;
const policyOf = (r: Raw): PolicyRow => ({
  rotationPeriodS: r.rotation_period_s as number,
  usageLimit: r.usage_limit as number,
  minEnc: r.min_enc as number,
  minDec: r.min_dec as number,
});
export const orgOf = (r: Raw): OrgRow => ({
  ...policyOf(r),
  org: r.org as string,
  enabled: r.enabled === 1,
  createdAt: r.created_at as string,
  primaryOek: r.primary_oek as number,
});
export const oekOf = (r: Raw): OekRow => ({
  org: r.org as string,
  version: r.version as number,
  hsmLabel: r.hsm_label as string,
  state: r.state as OekRow['state'],
  createdAt: r.created_at as string,
  destroyedAt: (r.destroyed_at as string | null) ?? null,
});
export const tenantOf = (r: Raw): TenantRow => ({
  ...policyOf(r),
  org: r.org as string,
  tenant: r.tenant as string,
  enabled: r.enabled === 1,
  state: r.state as TenantRow['state'],
  createdAt: r.created_at as string,
  primaryTek: r.primary_tek as number,
  fileName: r.file_name as string,
});
export const tekOf = (r: Raw): TekRow => ({
  org: r.org as string,
  tenant: r.tenant as string,
  version: r.version as number,
  oekVersion: r.oek_version as number,
  wrapped: new Uint8Array(r.wrapped as Buffer),
  state: r.state as TekRow['state'],
  createdAt: r.created_at as string,
  uses: r.uses as number,
});
export const epochOf = (r: Raw): EpochRow => ({
  id: r.id as number,
  org: r.org as string,
  state: r.state as EpochRow['state'],
  destroyOld: r.destroy_old === 1,
  newOek: r.new_oek as number,
  newLabel: r.new_label as string,
  oldOeks: JSON.parse(r.old_oeks as string) as number[],
  createdAt: r.created_at as string,
  completedAt: (r.completed_at as string | null) ?? null,
});
export const shredOf = (r: Raw): ShredRow => ({
  id: r.id as number,
  kind: r.kind as ShredRow['kind'],
  org: r.org as string,
  tenant: r.tenant as string,
  customer: (r.customer as string | null) ?? null,
  state: r.state as ShredRow['state'],
  requestedAt: r.requested_at as string,
  detail: r.detail as string,
  epochId: (r.epoch_id as number | null) ?? null,
  receipt: (r.receipt as string | null) ?? null,
});
