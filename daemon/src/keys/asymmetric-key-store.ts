/**
 * Rows of a tenant's asymmetric keys in its SQLite file (`tenant_keys`, created by the tenant
 * store's first migration). One row per key version: the private key wrapped under the TEK
 * (wrapped-key-v1 type 0x11, bound to org, tenant, key id, key version and TEK version), the
 * public key in the clear, and a small JSON `meta` (for an HSM-resident half: its label).
 * The newest version is the primary; TEK rotations rewrap these rows (hierarchy.ts rotateTek).
 */
import { KbError } from '../errors.ts';
import type { TenantStore } from '../store/tenant-store.ts';
import type { AsymmetricKeyInfo } from './asymmetric-key-api.ts';

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
  readonly tekVersion: number;
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
  tekVersion: r.tek_version as number,
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
      `INSERT INTO tenant_keys (key_id, version, kind, alg, tek_version, wrapped, public_key, state, created_at, meta)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      r.keyId,
      r.version,
      purposeOf(r.type),
      r.type,
      r.tekVersion,
      r.wrapped,
      r.publicKey,
      r.state,
      r.createdAt,
      JSON.stringify(r.meta),
    );
  }

  static get(s: TenantStore, keyId: string, version: number): AsymmetricKeyRow | undefined {
    const r = s.st('SELECT * FROM tenant_keys WHERE key_id = ? AND version = ?').get(keyId, version) as
      Raw | undefined;
    return r && rowOf(r);
  }

  /** Every version of one key, oldest first (empty when the key does not exist). */
  static versions(s: TenantStore, keyId: string): AsymmetricKeyRow[] {
    return (s.st('SELECT * FROM tenant_keys WHERE key_id = ? ORDER BY version').all(keyId) as Raw[]).map(
      rowOf,
    );
  }

  /** The type of a key (any version: it never changes), without reading key material. */
  static typeOf(s: TenantStore, keyId: string): AsymmetricKeyType | undefined {
    const r = s.st('SELECT alg FROM tenant_keys WHERE key_id = ? LIMIT 1').get(keyId) as Raw | undefined;
    return r === undefined ? undefined : (r.alg as AsymmetricKeyType);
  }

  /** Every version of every key, by key id then version. */
  static all(s: TenantStore): AsymmetricKeyRow[] {
    return (s.st('SELECT * FROM tenant_keys ORDER BY key_id, version').all() as Raw[]).map(rowOf);
  }

  static setState(s: TenantStore, keyId: string, version: number, state: AsymmetricKeyRow['state']): void {
    s.st('UPDATE tenant_keys SET state = ? WHERE key_id = ? AND version = ?').run(state, keyId, version);
  }
}

const KEY_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** A key name: path- and JSON-safe like every other name. */
export function asymmetricKeyId(v: unknown): string {
  if (typeof v !== 'string' || !KEY_ID.test(v))
    throw new KbError('INVALID_ARGUMENT', `key_id must match ${KEY_ID.source}`);
  return v;
}

/** A key's description from its version rows (oldest first; the last is the primary). */
export function keyInfo(rows: readonly AsymmetricKeyRow[]): AsymmetricKeyInfo {
  const last = rows[rows.length - 1] as AsymmetricKeyRow;
  return {
    keyId: last.keyId,
    type: last.type,
    inHsm: last.meta.hsmLabel !== undefined,
    primaryVersion: last.version,
    versions: rows.map((r) => ({ version: r.version, state: r.state, createdAt: r.createdAt })),
  };
}
