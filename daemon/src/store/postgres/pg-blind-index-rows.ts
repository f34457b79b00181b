/**
 * The blind-index tables of one tenant on PostgreSQL: the async mirror of blind-index-rows.ts,
 * run in the tenant transaction of a PgTenantStore (so a function's statements are atomic with
 * the rest of that transaction). Every statement names org and tenant; row-level security is the
 * second lock.
 */
import { indexOf, versionOf } from '../blind-index-rows.ts';
import type { BlindIndexRow, BlindIndexVersionRow } from '../blind-index-rows.ts';
import type { PgTenantStore } from './pg-tenant-store.ts';

export async function pgGetBlindIndex(t: PgTenantStore, name: string): Promise<BlindIndexRow | undefined> {
  const sql = 'SELECT * FROM blind_indexes WHERE org = $1 AND tenant = $2 AND name = $3';
  const [r] = await t.query(sql, [t.org, t.tenant, name]);
  return r && indexOf(r);
}

export async function pgListBlindIndexes(t: PgTenantStore): Promise<BlindIndexRow[]> {
  const sql = 'SELECT * FROM blind_indexes WHERE org = $1 AND tenant = $2 ORDER BY name';
  return (await t.query(sql, [t.org, t.tenant])).map(indexOf);
}

export async function pgListBlindIndexVersions(
  t: PgTenantStore,
  name: string,
): Promise<BlindIndexVersionRow[]> {
  const sql =
    'SELECT * FROM blind_index_versions WHERE org = $1 AND tenant = $2 AND name = $3 ORDER BY version';
  return (await t.query(sql, [t.org, t.tenant, name])).map(versionOf);
}

/** A new index (version 1) or a new primary version of an existing one. */
export async function pgAddBlindIndexVersion(t: PgTenantStore, v: BlindIndexVersionRow): Promise<void> {
  const scope = [t.org, t.tenant];
  if (v.version === 1) {
    await t.query(
      `INSERT INTO blind_indexes (org, tenant, name, primary_version, min_version, created_at)
         VALUES ($1, $2, $3, 1, 1, $4)`,
      [...scope, v.name, v.createdAt],
    );
  } else {
    const moved = await t.query(
      `UPDATE blind_indexes SET primary_version = $3 WHERE org = $1 AND tenant = $2 AND name = $4
         AND primary_version = $5 RETURNING name`,
      [...scope, v.version, v.name, v.version - 1],
    );
    // A concurrent rotation got there first: the caller retries on the fresh row.
    if (moved.length !== 1) throw new Error('blind index primary moved');
  }
  await t.query(
    `INSERT INTO blind_index_versions (org, tenant, name, version, normalization, output_bytes, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [...scope, v.name, v.version, v.normalization, v.outputBytes, v.createdAt],
  );
}

export async function pgSetBlindIndexMinVersion(
  t: PgTenantStore,
  name: string,
  minVersion: number,
): Promise<void> {
  await t.query('UPDATE blind_indexes SET min_version = $3 WHERE org = $1 AND tenant = $2 AND name = $4', [
    t.org,
    t.tenant,
    minVersion,
    name,
  ]);
}

/**
 * The CEK version a customer's key of (name, version) comes from: pinned to `primaryCek` on the
 * customer's first use, the pinned one ever after (a concurrent first use gets the winner's pin).
 */
export async function pgPinBlindIndexCek(
  t: PgTenantStore,
  name: string,
  version: number,
  customer: string,
  primaryCek: number,
): Promise<number> {
  const key = [t.org, t.tenant, name, version, customer];
  await t.query(
    `INSERT INTO blind_index_ceks (org, tenant, name, version, customer, cek_version) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (org, tenant, name, version, customer) DO NOTHING`,
    [...key, primaryCek],
  );
  const sql = `SELECT cek_version FROM blind_index_ceks
                 WHERE org = $1 AND tenant = $2 AND name = $3 AND version = $4 AND customer = $5`;
  const [r] = await t.query(sql, key);
  return r?.cek_version as number;
}
