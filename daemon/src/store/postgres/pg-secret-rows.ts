/**
 * The secrets tables of one tenant on PostgreSQL: the async mirror of secret-rows.ts, run in the
 * tenant transaction of a PgTenantStore. Blobs are sealed by keys/secret-store.ts, never plaintext.
 */
import { secretOf, versionOf } from '../secret-rows.ts';
import type { SecretRow, SecretVersionRow } from '../secret-rows.ts';
import type { PgTenantStore } from './pg-tenant-store.ts';

export async function pgGetSecret(
  t: PgTenantStore,
  customer: string,
  name: string,
): Promise<SecretRow | undefined> {
  const sql = 'SELECT * FROM secrets WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4';
  const [r] = await t.query(sql, [t.org, t.tenant, customer, name]);
  return r && secretOf(r);
}

export async function pgListSecrets(t: PgTenantStore, customer: string): Promise<SecretRow[]> {
  const sql = 'SELECT * FROM secrets WHERE org = $1 AND tenant = $2 AND customer = $3 ORDER BY name';
  return (await t.query(sql, [t.org, t.tenant, customer])).map(secretOf);
}

export async function pgGetSecretVersion(
  t: PgTenantStore,
  customer: string,
  name: string,
  version: number,
): Promise<SecretVersionRow | undefined> {
  const sql = `SELECT * FROM secret_versions
                 WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4 AND version = $5`;
  const [r] = await t.query(sql, [t.org, t.tenant, customer, name, version]);
  return r && versionOf(r);
}

/** Versions of a secret, oldest first (metadata and blobs). */
export async function pgListSecretVersions(
  t: PgTenantStore,
  customer: string,
  name: string,
): Promise<SecretVersionRow[]> {
  const sql = `SELECT * FROM secret_versions WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4
                 ORDER BY version`;
  return (await t.query(sql, [t.org, t.tenant, customer, name])).map(versionOf);
}

/**
 * Append version `v.version` (= current + 1) with its sealed blob, then drop the oldest versions
 * beyond `maxVersions`. Returns false, writing nothing, when the current version moved meanwhile:
 * the secrets row is claimed by a conditional INSERT or UPDATE, so of two concurrent appends of
 * the same version the second waits for the first's row lock and then finds it moved.
 */
export async function pgAppendSecretVersion(
  t: PgTenantStore,
  v: SecretVersionRow & { readonly blob: Uint8Array },
  maxVersions: number,
): Promise<boolean> {
  const key = [t.org, t.tenant, v.customer, v.name];
  const claimed =
    v.version === 1
      ? await t.query(
          `INSERT INTO secrets (org, tenant, customer, name, current_version, max_versions, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 1, $5, $6, $6) ON CONFLICT (org, tenant, customer, name) DO NOTHING RETURNING name`,
          [...key, maxVersions, v.createdAt],
        )
      : await t.query(
          `UPDATE secrets SET current_version = $5, max_versions = $6, updated_at = $7
             WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4 AND current_version = $8 RETURNING name`,
          [...key, v.version, maxVersions, v.createdAt, v.version - 1],
        );
  if (claimed.length !== 1) return false;
  await t.query(
    `INSERT INTO secret_versions (org, tenant, customer, name, version, cek_version, blob, state, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)`,
    [...key, v.version, v.cekVersion, v.blob, v.createdAt],
  );
  await t.query(
    `DELETE FROM secret_versions WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4 AND version <= $5`,
    [...key, v.version - maxVersions],
  );
  return true;
}

/** Move versions between active and deleted (soft delete / undelete); destroyed ones stay so. */
export async function pgSetSecretVersionsState(
  t: PgTenantStore,
  customer: string,
  name: string,
  versions: readonly number[],
  state: 'active' | 'deleted',
): Promise<void> {
  await t.query(
    `UPDATE secret_versions SET state = $5 WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4
       AND version = ANY($6::int[]) AND state <> 'destroyed'`,
    [t.org, t.tenant, customer, name, state, [...versions]],
  );
}

/** Hard delete: the blobs are gone (the metadata row stays, marked destroyed). */
export async function pgDestroySecretVersions(
  t: PgTenantStore,
  customer: string,
  name: string,
  versions: readonly number[],
): Promise<void> {
  await t.query(
    `UPDATE secret_versions SET state = 'destroyed', blob = NULL
       WHERE org = $1 AND tenant = $2 AND customer = $3 AND name = $4 AND version = ANY($5::int[])`,
    [t.org, t.tenant, customer, name, [...versions]],
  );
}
