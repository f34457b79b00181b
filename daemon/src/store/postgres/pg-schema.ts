/**
 * The PostgreSQL schema, as versioned migrations (a shipped migration is never edited: add one).
 * Registry tables mirror registry-store.ts and policy/approvals.ts; tenant-level tables mirror
 * tenant-store.ts with (org, tenant) leading every key. Every tenant-level table has row-level
 * security, FORCEd so that the owning role is bound too: a row is visible and writable only when
 * its org and tenant equal the transaction's keybroker.org / keybroker.tenant settings. An unset
 * setting reads as NULL, and a reset one as '' (no row has an empty org or tenant): both match
 * nothing, so a query outside PostgresStore.withTenant sees no tenant row and can write none.
 */
import type { Migration } from '../migrations.ts';

/** Tenant-level tables: row-level security on each (tests check the list against the catalog). */
export const TENANT_TABLES = [
  'customers',
  'cek_versions',
  'tenant_keys',
  'tenant_key_policies',
  'blind_indexes',
  'blind_index_versions',
  'blind_index_ceks',
  'secrets',
  'secret_versions',
  'import_jobs',
] as const;

export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE orgs (
  org TEXT PRIMARY KEY CHECK (org <> ''), enabled BOOLEAN NOT NULL, created_at TEXT NOT NULL,
  primary_oek INTEGER NOT NULL, rotation_period_s BIGINT NOT NULL, usage_limit BIGINT NOT NULL,
  min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL);
CREATE TABLE oek_versions (
  org TEXT NOT NULL REFERENCES orgs(org), version INTEGER NOT NULL, hsm_label TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL CHECK (state IN ('enabled','retired','destroyed')),
  created_at TEXT NOT NULL, destroyed_at TEXT, PRIMARY KEY (org, version));
CREATE TABLE tenants (
  org TEXT NOT NULL REFERENCES orgs(org), tenant TEXT NOT NULL CHECK (tenant <> ''), enabled BOOLEAN NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active','destroyed')), created_at TEXT NOT NULL,
  primary_tek INTEGER NOT NULL, file_name TEXT NOT NULL DEFAULT '',
  rotation_period_s BIGINT NOT NULL, usage_limit BIGINT NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL,
  PRIMARY KEY (org, tenant));
CREATE INDEX tenants_by_state ON tenants (state);
CREATE TABLE tek_versions (
  org TEXT NOT NULL, tenant TEXT NOT NULL, version INTEGER NOT NULL, oek_version INTEGER NOT NULL,
  wrapped BYTEA NOT NULL, state TEXT NOT NULL CHECK (state IN ('enabled','disabled')),
  created_at TEXT NOT NULL, uses BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (org, tenant, version), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE INDEX tek_by_oek ON tek_versions (org, oek_version);
CREATE TABLE shred_epochs (
  id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('generating','rewrapping','destroying','done')),
  destroy_old BOOLEAN NOT NULL, new_oek INTEGER NOT NULL, new_label TEXT NOT NULL, old_oeks INTEGER[] NOT NULL,
  created_at TEXT NOT NULL, completed_at TEXT);
CREATE TABLE shred_log (
  id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('tenant','customer')),
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT,
  state TEXT NOT NULL CHECK (state IN ('tek-rotation','epoch','done')),
  requested_at TEXT NOT NULL, detail TEXT NOT NULL, epoch_id INTEGER, receipt TEXT);
CREATE TABLE broker_keys (name TEXT PRIMARY KEY, hsm_label TEXT NOT NULL, alg TEXT NOT NULL, spki BYTEA NOT NULL);
CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  op TEXT NOT NULL CHECK (op IN ('destroy-tenant','destroy-customer','rotate-oek','change-policy')),
  org TEXT NOT NULL, tenant TEXT, customer TEXT, payload_digest TEXT, requester TEXT NOT NULL,
  requested_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','approved','executed','cancelled')),
  approver TEXT, approved_at BIGINT, executed_at BIGINT);
CREATE INDEX approvals_org_status ON approvals (org, status);
CREATE INDEX approvals_org_requested ON approvals (org, requested_at);
CREATE INDEX approvals_expires ON approvals (expires_at);

CREATE TABLE customers (
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT NOT NULL, enabled BOOLEAN NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active','destroyed')), created_at TEXT NOT NULL, primary_cek INTEGER NOT NULL,
  rotation_period_s BIGINT NOT NULL, usage_limit BIGINT NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL,
  PRIMARY KEY (org, tenant, customer), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE TABLE cek_versions (
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT NOT NULL, version INTEGER NOT NULL,
  tek_version INTEGER NOT NULL, wrapped BYTEA NOT NULL, state TEXT NOT NULL CHECK (state IN ('enabled','disabled')),
  created_at TEXT NOT NULL, uses BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (org, tenant, customer, version),
  FOREIGN KEY (org, tenant, customer) REFERENCES customers(org, tenant, customer));
CREATE TABLE tenant_keys (
  org TEXT NOT NULL, tenant TEXT NOT NULL, key_id TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL,
  alg TEXT NOT NULL, tek_version INTEGER NOT NULL, wrapped BYTEA NOT NULL, public_key BYTEA, state TEXT NOT NULL,
  created_at TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}', customer TEXT NOT NULL DEFAULT '',
  cek_version INTEGER NOT NULL DEFAULT 0, uses BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (org, tenant, key_id, version), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE TABLE tenant_key_policies (
  org TEXT NOT NULL, tenant TEXT NOT NULL, key_id TEXT NOT NULL, rotation_period_s BIGINT NOT NULL,
  usage_limit BIGINT NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL,
  PRIMARY KEY (org, tenant, key_id), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));

ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customers
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE cek_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE cek_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cek_versions
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE tenant_key_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_key_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_key_policies
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
`,
  },
  {
    // Registry migrations 2 and 3 (broker_meta, shred_intents, audit_head), the approvals op
    // 'issue-admin-certificate' (policy/approvals.ts), and tenant-store migration 4 (blind indexes,
    // secrets) as tenant-level tables with (org, tenant) leading every key.
    version: 2,
    sql: `
CREATE TABLE broker_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shred_intents (
  id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('tenant','customer')),
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT, approval_id TEXT,
  state TEXT NOT NULL CHECK (state IN ('pending','started','abandoned')),
  requested_at TEXT NOT NULL, shred_id INTEGER);
CREATE INDEX shred_intents_by_approval ON shred_intents (approval_id);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running','stopped','reset')), updated_at TEXT NOT NULL);
ALTER TABLE approvals DROP CONSTRAINT approvals_op_check, ADD CONSTRAINT approvals_op_check
  CHECK (op IN ('destroy-tenant','destroy-customer','rotate-oek','change-policy','issue-admin-certificate'));

CREATE TABLE blind_indexes (
  org TEXT NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL, primary_version INTEGER NOT NULL,
  min_version INTEGER NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (org, tenant, name), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE TABLE blind_index_versions (
  org TEXT NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
  normalization INTEGER NOT NULL, output_bytes INTEGER NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (org, tenant, name, version), FOREIGN KEY (org, tenant, name) REFERENCES blind_indexes(org, tenant, name));
CREATE TABLE blind_index_ceks (
  org TEXT NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, customer TEXT NOT NULL,
  cek_version INTEGER NOT NULL,
  PRIMARY KEY (org, tenant, name, version, customer), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE TABLE secrets (
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT NOT NULL, name TEXT NOT NULL,
  current_version INTEGER NOT NULL, max_versions INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (org, tenant, customer, name), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE TABLE secret_versions (
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
  cek_version INTEGER NOT NULL, blob BYTEA, state TEXT NOT NULL CHECK (state IN ('active','deleted','destroyed')),
  created_at TEXT NOT NULL,
  PRIMARY KEY (org, tenant, customer, name, version), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));

ALTER TABLE blind_indexes ENABLE ROW LEVEL SECURITY;
ALTER TABLE blind_indexes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON blind_indexes
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE blind_index_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE blind_index_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON blind_index_versions
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE blind_index_ceks ENABLE ROW LEVEL SECURITY;
ALTER TABLE blind_index_ceks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON blind_index_ceks
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secrets
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
ALTER TABLE secret_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE secret_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secret_versions
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
`,
  },
  {
    // Per-chain pinned audit heads (registry migration 4: one chain per worker of serve --workers).
    version: 3,
    sql: `
CREATE TABLE audit_chain_heads (
  chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running','stopped','reset')), updated_at TEXT NOT NULL);
`,
  },
  {
    // Key import jobs (tenant migration 5): a one-time wrapping key per job, wrapped under the TEK.
    version: 4,
    sql: `
CREATE TABLE import_jobs (
  org TEXT NOT NULL, tenant TEXT NOT NULL, job_id TEXT NOT NULL, customer TEXT NOT NULL, key_id TEXT NOT NULL,
  alg TEXT NOT NULL, wrapping TEXT NOT NULL, tek_version INTEGER NOT NULL, wrapped BYTEA NOT NULL,
  public_key BYTEA NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
  PRIMARY KEY (org, tenant, job_id), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
ALTER TABLE import_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE import_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON import_jobs
  USING (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true))
  WITH CHECK (org = current_setting('keybroker.org', true) AND tenant = current_setting('keybroker.tenant', true));
`,
  },
];
