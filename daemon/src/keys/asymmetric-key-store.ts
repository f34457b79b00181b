/**
 * Rows of a tenant's asymmetric keys in its SQLite file (`tenant_keys`, created by the tenant
 * store's first migration). One row per key version: the private key wrapped under the TEK
 * (wrapped-key-v1 type 0x11, bound to org, tenant, key id, key version and TEK version), the
 * public key in the clear, and a small JSON `meta` (for an HSM-resident half: its label).
 * The newest version is the primary; TEK rotations rewrap these rows (hierarchy.ts rotateTek).
 */
import { KbError } from '../errors.ts';
import type { PolicyRow } from '../store/registry-rows.ts';
import type { TenantStore } from '../store/tenant-store.ts';
import type { AsymmetricKeyInfo } from './asymmetric-key-api.ts';

/** Asymmetric keys rotate only on demand unless a policy says otherwise. */
export const DEFAULT_ASYMMETRIC_POLICY: PolicyRow = {
  rotationPeriodS: 0,
  usageLimit: 0,
  minEnc: 1,
  minDec: 1,
};

/** Key types a tenant may hold (public-key-export.ts names; `ecdsa-p256` always lives in the HSM). */
export const ASYMMETRIC_KEY_TYPES = [
  'ml-kem-768',
  'ml-kem-1024',
  'x-wing',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
  'composite-mldsa65-ecdsa-p256',
  'ed25519',
  'ecdsa-p256',
] as const;
export type AsymmetricKeyType = (typeof ASYMMETRIC_KEY_TYPES)[number];

export type AsymmetricKeyPurpose = 'kem' | 'sig';

export function purposeOf(type: AsymmetricKeyType): AsymmetricKeyPurpose {
  return type === 'ml-kem-768' || type === 'ml-kem-1024' || type === 'x-wing' ? 'kem' : 'sig';
}

export interface AsymmetricKeyMeta {
  /** Label of the non-extractable HSM key (ecdsa-p256, or the ECDSA half of a composite). */
  readonly hsmLabel?: string;
}

export interface AsymmetricKeyRow {
  readonly keyId: string;
  readonly version: number;
  readonly type: AsymmetricKeyType;
  /** '' for a tenant-level key; else the customer whose CEK wraps it. */
  readonly customer: string;
  /** TEK version of a tenant-level key (0 for a customer key). */
  readonly tekVersion: number;
  /** CEK version of a customer key (0 for a tenant-level key). */
  readonly cekVersion: number;
  /** Operations counted on this version (stored; unflushed counts are in AsymmetricKeyUsage). */
  readonly uses: number;
  readonly wrapped: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly state: 'enabled' | 'disabled';
  readonly createdAt: string;
  readonly meta: AsymmetricKeyMeta;
}

type Raw = Record<string, unknown>;
const rowOf = (r: Raw): AsymmetricKeyRow => ({
  keyId: r.key_id as string,
  version: r.version as number,
  type: r.alg as AsymmetricKeyType,
  customer: r.customer as string,
  tekVersion: r.tek_version as number,
  cekVersion: r.cek_version as number,
  uses: r.uses as number,
  wrapped: new Uint8Array(r.wrapped as Buffer),
  publicKey: new Uint8Array(r.public_key as Buffer),
  state: r.state as AsymmetricKeyRow['state'],
  createdAt: r.created_at as string,
  meta: JSON.parse(r.meta as string) as AsymmetricKeyMeta,
});

/** Reads and writes `tenant_keys` through the tenant store's prepared statements. */
export class AsymmetricKeyStore {
  /** Insert one version (a new key, or a rotation). */
  static insert(s: TenantStore, r: AsymmetricKeyRow): void {
    s.st(
      `INSERT INTO tenant_keys (key_id, version, kind, alg, customer, tek_version, cek_version, uses, wrapped, public_key, state, created_at, meta)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`,
    ).run(
      r.keyId,
      r.version,
      purposeOf(r.type),
      r.type,
      r.customer,
      r.tekVersion,
      r.cekVersion,
      r.wrapped,
      r.publicKey,
      r.state,
      r.createdAt,
      JSON.stringify(r.meta),
    );
    s.keysChanged();
  }

  static get(s: TenantStore, keyId: string, version: number): AsymmetricKeyRow | undefined {
    const r = s.st('SELECT * FROM tenant_keys WHERE key_id = ? AND version = ?').get(keyId, version) as
      Raw | undefined;
    return r && rowOf(r);
  }

  /** Every version of one key, oldest first (empty when the key does not exist). */
  static versions(s: TenantStore, keyId: string): AsymmetricKeyRow[] {
    // Sorted here, not by SQL: this runs on every Keys call, and with better-sqlite3's SQLite an
    // ORDER BY costs 10-40 µs a statement even where the primary-key index already gives the order.
    return (s.st('SELECT * FROM tenant_keys WHERE key_id = ?').all(keyId) as Raw[])
      .map(rowOf)
      .sort((a, b) => a.version - b.version);
  }

  /** Every version of every key, by key id then version. */
  static all(s: TenantStore): AsymmetricKeyRow[] {
    return (s.st('SELECT * FROM tenant_keys ORDER BY key_id, version').all() as Raw[]).map(rowOf);
  }

  /** A key's rotation/usage/min-version policy (defaults for keys created without one). */
  static policy(s: TenantStore, keyId: string): PolicyRow {
    const r = s.st('SELECT * FROM tenant_key_policies WHERE key_id = ?').get(keyId) as Raw | undefined;
    if (r === undefined) return { ...DEFAULT_ASYMMETRIC_POLICY };
    return {
      rotationPeriodS: r.rotation_period_s as number,
      usageLimit: r.usage_limit as number,
      minEnc: r.min_enc as number,
      minDec: r.min_dec as number,
    };
  }

  static setPolicy(s: TenantStore, keyId: string, p: PolicyRow): void {
    s.st(
      `INSERT INTO tenant_key_policies (key_id, rotation_period_s, usage_limit, min_enc, min_dec) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key_id) DO UPDATE SET rotation_period_s = excluded.rotation_period_s,
           usage_limit = excluded.usage_limit, min_enc = excluded.min_enc, min_dec = excluded.min_dec`,
    ).run(keyId, p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec);
    s.keysChanged();
  }

  /** Keys with a rotation period, and that period (for the rotation scan). */
  static periodic(s: TenantStore): { keyId: string; rotationPeriodS: number }[] {
    return (
      s
        .st('SELECT key_id, rotation_period_s FROM tenant_key_policies WHERE rotation_period_s > 0')
        .all() as Raw[]
    ).map((r) => ({ keyId: r.key_id as string, rotationPeriodS: r.rotation_period_s as number }));
  }

  /**
   * Add usage counts. Counts are not key material (a crash may lose the last interval anyway):
   * written without the fsync, as the CEK counts are (tenant-store.ts addCekUses).
   */
  static addUses(s: TenantStore, rows: readonly { keyId: string; version: number; n: number }[]): void {
    const st = s.st('UPDATE tenant_keys SET uses = uses + ? WHERE key_id = ? AND version = ?');
    try {
      s.countsTx(() => {
        for (const r of rows) st.run(r.n, r.keyId, r.version);
      });
    } finally {
      s.keysChanged();
    }
  }

  /**
   * Replace a row's wrapped key (and state), only if the row still holds `r.wrapped` and `r.state`
   * (compare-and-set: a TEK rotation may have rewrapped it meanwhile). True when replaced.
   */
  static replaceWrapped(
    s: TenantStore,
    r: AsymmetricKeyRow,
    wrapped: Uint8Array,
    state: AsymmetricKeyRow['state'] = r.state,
  ): boolean {
    const n = s
      .st(
        'UPDATE tenant_keys SET wrapped = ?, state = ? WHERE key_id = ? AND version = ? AND wrapped = ? AND state = ?',
      )
      .run(wrapped, state, r.keyId, r.version, r.wrapped, r.state).changes;
    s.keysChanged();
    return n === 1;
  }
}

const KEY_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** A key name: path- and JSON-safe like every other name. */
export function asymmetricKeyId(v: unknown): string {
  if (typeof v !== 'string' || !KEY_ID.test(v))
    throw new KbError('INVALID_ARGUMENT', `key_id must match ${KEY_ID.source}`);
  return v;
}

/**
 * A key's description from its version rows (oldest first; the last is the primary), its policy,
 * and the unflushed use counts of its versions.
 */
export function keyInfo(
  rows: readonly AsymmetricKeyRow[],
  policy: PolicyRow = DEFAULT_ASYMMETRIC_POLICY,
  pending: (version: number) => number = () => 0,
): AsymmetricKeyInfo {
  const last = rows[rows.length - 1] as AsymmetricKeyRow;
  return {
    keyId: last.keyId,
    type: last.type,
    inHsm: last.meta.hsmLabel !== undefined,
    primaryVersion: last.version,
    versions: rows.map((r) => ({
      version: r.version,
      state: r.state,
      createdAt: r.createdAt,
      uses: r.uses + pending(r.version),
    })),
    ...(last.customer !== '' ? { customer: last.customer } : {}),
    policy: {
      rotationPeriodSeconds: policy.rotationPeriodS,
      usageLimit: policy.usageLimit,
      minEncryptVersion: policy.minEnc,
      minDecryptVersion: policy.minDec,
    },
  };
}
