/**
 * The blind-index tables of a tenant file (schema: tenant-store.ts, migration 4): definitions,
 * their versions, and the CEK version each customer's index key of a version is derived from.
 */
import type { TenantStore } from './tenant-store.ts';

export interface BlindIndexRow {
  readonly name: string;
  readonly primaryVersion: number;
  /** Versions below this are no longer searchable (their tokens are not returned). */
  readonly minVersion: number;
  readonly createdAt: string;
}
export interface BlindIndexVersionRow {
  readonly name: string;
  readonly version: number;
  /** Bit set of normalization steps (keys/blind-index-normalize.ts). */
  readonly normalization: number;
  /** 16 or 32. */
  readonly outputBytes: number;
  readonly createdAt: string;
}

type Raw = Record<string, unknown>;
export const indexOf = (r: Raw): BlindIndexRow => ({
  name: r.name as string,
  primaryVersion: r.primary_version as number,
  minVersion: r.min_version as number,
  createdAt: r.created_at as string,
});
export const versionOf = (r: Raw): BlindIndexVersionRow => ({
  name: r.name as string,
  version: r.version as number,
  normalization: r.normalization as number,
  outputBytes: r.output_bytes as number,
  createdAt: r.created_at as string,
});

export function getBlindIndex(s: TenantStore, name: string): BlindIndexRow | undefined {
  const r = s.st('SELECT * FROM blind_indexes WHERE name = ?').get(name) as Raw | undefined;
  return r && indexOf(r);
}

export function listBlindIndexes(s: TenantStore): BlindIndexRow[] {
  return (s.st('SELECT * FROM blind_indexes ORDER BY name').all() as Raw[]).map(indexOf);
}

export function listBlindIndexVersions(s: TenantStore, name: string): BlindIndexVersionRow[] {
  const sql = 'SELECT * FROM blind_index_versions WHERE name = ? ORDER BY version';
  return (s.st(sql).all(name) as Raw[]).map(versionOf);
}

/** A new index (version 1) or a new primary version of an existing one, in one transaction. */
export function addBlindIndexVersion(s: TenantStore, v: BlindIndexVersionRow): void {
  s.tx(() => {
    if (v.version === 1) {
      s.st(
        'INSERT INTO blind_indexes (name, primary_version, min_version, created_at) VALUES (?, 1, 1, ?)',
      ).run(v.name, v.createdAt);
    } else {
      const n = s
        .st('UPDATE blind_indexes SET primary_version = ? WHERE name = ? AND primary_version = ?')
        .run(v.version, v.name, v.version - 1).changes;
      // A concurrent rotation got there first: the caller retries on the fresh row.
      if (n !== 1) throw new Error('blind index primary moved');
    }
    s.st(
      'INSERT INTO blind_index_versions (name, version, normalization, output_bytes, created_at) VALUES (?, ?, ?, ?, ?)',
    ).run(v.name, v.version, v.normalization, v.outputBytes, v.createdAt);
  });
}

export function setBlindIndexMinVersion(s: TenantStore, name: string, minVersion: number): void {
  s.st('UPDATE blind_indexes SET min_version = ? WHERE name = ?').run(minVersion, name);
}

/**
 * The CEK version a customer's key of (name, version) comes from: pinned to `primaryCek` on the
 * customer's first use, the pinned one ever after (a CEK rotation must not change tokens).
 */
export function pinBlindIndexCek(
  s: TenantStore,
  name: string,
  version: number,
  customer: string,
  primaryCek: number,
): number {
  const get = 'SELECT cek_version FROM blind_index_ceks WHERE name = ? AND version = ? AND customer = ?';
  const r = s.st(get).get(name, version, customer) as { cek_version: number } | undefined;
  if (r) return r.cek_version;
  s.st(
    'INSERT OR IGNORE INTO blind_index_ceks (name, version, customer, cek_version) VALUES (?, ?, ?, ?)',
  ).run(name, version, customer, primaryCek);
  return (s.st(get).get(name, version, customer) as { cek_version: number }).cek_version;
}
