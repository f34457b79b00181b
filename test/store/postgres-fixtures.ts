// Rows for the PostgreSQL store tests (the row types are the SQLite stores').
import type { OekRow, OrgRow, TekRow, TenantRow } from '../../daemon/src/store/registry-rows.ts';
import type { CekRow, CustomerRow } from '../../daemon/src/store/tenant-store.ts';
import type { TenantKeyVersionRow } from '../../daemon/src/store/postgres/pg-rows.ts';
import type { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';

export const AT = '2026-12-07T12:00:00.000Z';
const policy = { rotationPeriodS: 86_400, usageLimit: 1_000_000, minEnc: 1, minDec: 1 };
const bytes = (tag: string): Uint8Array => new Uint8Array(Buffer.from(`wrapped:${tag}`));

export const orgRow = (org: string): OrgRow => ({
  ...policy,
  org,
  enabled: true,
  createdAt: AT,
  primaryOek: 1,
});
export const oekRow = (org: string, version = 1): OekRow => ({
  org,
  version,
  hsmLabel: `kb-oek-${org}-${version}`,
  state: 'enabled',
  createdAt: AT,
  destroyedAt: null,
});
export const tenantRow = (org: string, tenant: string): TenantRow => ({
  ...policy,
  org,
  tenant,
  enabled: true,
  state: 'active',
  createdAt: AT,
  primaryTek: 1,
  fileName: '',
});
export const tekRow = (org: string, tenant: string, version = 1, oekVersion = 1): TekRow => ({
  org,
  tenant,
  version,
  oekVersion,
  wrapped: bytes(`tek:${org}/${tenant}/${version}`),
  state: 'enabled',
  createdAt: AT,
  uses: 0,
});
export const customerRow = (customer: string): CustomerRow => ({
  ...policy,
  customer,
  enabled: true,
  state: 'active',
  createdAt: AT,
  primaryCek: 1,
});
export const cekRow = (customer: string, version = 1, tekVersion = 1): CekRow => ({
  customer,
  version,
  tekVersion,
  wrapped: bytes(`cek:${customer}/${version}`),
  state: 'enabled',
  createdAt: AT,
  uses: 0,
});
export const keyRow = (keyId: string, version = 1, customer = ''): Omit<TenantKeyVersionRow, 'uses'> => ({
  keyId,
  version,
  kind: 'sig',
  alg: 'ml-dsa-65',
  customer,
  tekVersion: customer === '' ? 1 : 0,
  cekVersion: customer === '' ? 0 : 1,
  wrapped: bytes(`key:${keyId}/${version}`),
  publicKey: bytes(`pub:${keyId}/${version}`),
  state: 'enabled',
  createdAt: AT,
  meta: '{}',
});

/** An org (with OEK 1) unless it exists, and a tenant in it with TEK 1. */
export async function seedTenant(store: PostgresStore, org: string, tenant: string): Promise<void> {
  if ((await store.registry.getOrg(org)) === undefined)
    await store.registry.insertOrg(orgRow(org), oekRow(org));
  await store.registry.insertTenant(tenantRow(org, tenant), tekRow(org, tenant));
}

/**
 * A tenant with one customer (CEK 1), one tenant-level key and its policy, a blind index (version
 * 1, pinned to the customer's CEK 1) and a secret with one version: a row in every tenant table.
 */
export async function seedTenantRows(store: PostgresStore, org: string, tenant: string): Promise<void> {
  await seedTenant(store, org, tenant);
  const customer = `c-${tenant}`;
  await store.withTenant(org, tenant, async (t) => {
    await t.insertCustomer(customerRow(customer), cekRow(customer));
    await t.insertKey(keyRow(`k-${tenant}`));
    await t.setKeyPolicy(`k-${tenant}`, policy);
    const scope = [org, tenant];
    await t.query(
      'INSERT INTO blind_indexes (org, tenant, name, primary_version, min_version, created_at) VALUES ($1, $2, $3, 1, 1, $4)',
      [...scope, 'email', AT],
    );
    await t.query(
      `INSERT INTO blind_index_versions (org, tenant, name, version, normalization, output_bytes, created_at)
         VALUES ($1, $2, $3, 1, 0, 16, $4)`,
      [...scope, 'email', AT],
    );
    await t.query(
      'INSERT INTO blind_index_ceks (org, tenant, name, version, customer, cek_version) VALUES ($1, $2, $3, 1, $4, 1)',
      [...scope, 'email', customer],
    );
    await t.query(
      `INSERT INTO secrets (org, tenant, customer, name, current_version, max_versions, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, 10, $5, $5)`,
      [...scope, customer, 'db-password', AT],
    );
    await t.query(
      `INSERT INTO secret_versions (org, tenant, customer, name, version, cek_version, blob, state, created_at)
         VALUES ($1, $2, $3, $4, 1, 1, $5, 'active', $6)`,
      [...scope, customer, 'db-password', bytes(`secret:${tenant}`), AT],
    );
    await t.query(
      `INSERT INTO import_jobs (org, tenant, job_id, customer, key_id, alg, wrapping, tek_version, wrapped,
         public_key, created_at, expires_at) VALUES ($1, $2, $3, '', 'legacy', 'ml-dsa-65', 'ml-kem-768', 1, $4, $5, $6, $6)`,
      [...scope, `job-${tenant}`, bytes(`job:${tenant}`), bytes('pk'), AT],
    );
  });
}
