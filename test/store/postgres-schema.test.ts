// The PostgreSQL schema on a real server (test/support/postgres-server.ts): versioned migrations
// (idempotent, concurrent-safe, one transaction each, a newer schema refused) and row-level
// security on every tenant-level table (a query that forgets its tenant filter still sees and
// writes only the tenant of its transaction; with no tenant set it sees and writes nothing).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import { RegistryStore } from '../../daemon/src/store/registry-store.ts';
import { TenantStore } from '../../daemon/src/store/tenant-store.ts';
import type { PgRegistryStore } from '../../daemon/src/store/postgres/pg-registry-store.ts';
import { migratePg } from '../../daemon/src/store/postgres/pg-migrate.ts';
import { PG_MIGRATIONS, TENANT_TABLES } from '../../daemon/src/store/postgres/pg-schema.ts';
import { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';
import { startPostgres } from '../support/postgres-server.ts';
import type { PostgresServer } from '../support/postgres-server.ts';
import { AT, seedTenantRows } from './postgres-fixtures.ts';

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
});

async function versions(url: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    return r.rows.map((x) => x.version);
  } finally {
    await c.end();
  }
}

describe('migrations', () => {
  test('applied once, re-running is a no-op, a failing migration leaves nothing behind', async () => {
    const pool = new pg.Pool({ connectionString: await server.createDatabase('mig_generic') });
    try {
      const m = [
        { version: 1, sql: 'CREATE TABLE a (x INTEGER)' },
        { version: 2, sql: 'CREATE TABLE b (y INTEGER)' },
      ];
      assert.equal(await migratePg(pool, m.slice(0, 1)), 1);
      assert.equal(await migratePg(pool, m), 2);
      assert.equal(await migratePg(pool, m), 2, 're-running is a no-op');
      const bad = [...m, { version: 3, sql: 'CREATE TABLE c (z INTEGER); SELECT 1/0' }];
      await assert.rejects(migratePg(pool, bad), /division by zero/);
      const c = await pool.query("SELECT to_regclass('c') AS t");
      assert.equal(c.rows[0].t, null, 'the failed migration created table c');
      const v = await pool.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      );
      assert.deepEqual(
        v.rows.map((r) => r.version),
        [1, 2],
      );
      await assert.rejects(migratePg(pool, m.slice(0, 1)), /schema version 2 is newer than this build \(1\)/);
    } finally {
      await pool.end();
    }
  });

  test('the store schema: brokers opening at once apply it exactly once; reopening changes nothing', async () => {
    const url = await server.createDatabase('mig_store');
    const stores = await Promise.all([1, 2, 3, 4].map(() => PostgresStore.open({ url })));
    try {
      for (const s of stores) assert.equal(s.schemaVersion, 4);
      assert.deepEqual(await versions(url), [1, 2, 3, 4]);
      const again = await PostgresStore.open({ url });
      await again.close();
      assert.deepEqual(await versions(url), [1, 2, 3, 4]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test("a version-1 database is upgraded in place: its rows stay, the approvals op CHECK takes 'issue-admin-certificate'", async () => {
    const url = await server.createDatabase('mig_upgrade');
    const approval = (id: string, op: string) =>
      pool.query(
        `INSERT INTO approvals (id, op, org, requester, requested_at, expires_at, status)
           VALUES ($1, $2, 'o1', 'alice', 1, 2, 'pending')`,
        [id, op],
      );
    const pool = new pg.Pool({ connectionString: url });
    try {
      assert.equal(await migratePg(pool, PG_MIGRATIONS.slice(0, 1)), 1);
      await approval('a1', 'change-policy');
      await assert.rejects(approval('a2', 'issue-admin-certificate'), /approvals_op_check/);
      const store = await PostgresStore.open({ url });
      await store.close();
      assert.deepEqual(await versions(url), [1, 2, 3, 4]);
      await approval('a2', 'issue-admin-certificate');
      await assert.rejects(approval('a3', 'no-such-op'), /approvals_op_check/);
      const r = await pool.query<{ id: string; op: string }>('SELECT id, op FROM approvals ORDER BY id');
      assert.deepEqual(
        r.rows.map((x) => [x.id, x.op]),
        [
          ['a1', 'change-policy'],
          ['a2', 'issue-admin-certificate'],
        ],
      );
    } finally {
      await pool.end();
    }
  });

  test('a database whose schema is newer than this build is refused', async () => {
    const url = await server.createDatabase('mig_newer');
    await (await PostgresStore.open({ url })).close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('INSERT INTO schema_migrations (version, applied_at) VALUES (99, $1)', [AT]);
    await c.end();
    await assert.rejects(PostgresStore.open({ url }), /schema version 99 is newer than this build \(4\)/);
  });

  test('every SQLite table and column has its PostgreSQL twin (tenant-level ones with org and tenant added)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-pgschema-'));
    const sqliteColumns = new Map<string, string[]>();
    try {
      const reg = RegistryStore.open(join(dir, 'registry.db'));
      const ten = TenantStore.open(join(dir, 'tenant.db'), true);
      new ApprovalStore({ path: join(dir, 'approvals.db') }).close();
      const apr = new Database(join(dir, 'approvals.db'));
      for (const db of [reg.db, ten.db, apr]) {
        const tables = db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
          .all() as {
          name: string;
        }[];
        for (const { name } of tables) {
          const cols = (db.prepare(`PRAGMA table_info(${name})`).all() as { name: string }[]).map(
            (c) => c.name,
          );
          sqliteColumns.set(name, cols.sort());
        }
      }
      reg.close();
      ten.close();
      apr.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const url = await server.createDatabase('mig_parity');
    const store = await PostgresStore.open({ url });
    try {
      const r = await store.pool.query<{ table_name: string; column_name: string }>(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'",
      );
      const pgColumns = new Map<string, string[]>();
      for (const row of r.rows)
        pgColumns.set(row.table_name, [...(pgColumns.get(row.table_name) ?? []), row.column_name]);
      const tenantLevel = new Set<string>(TENANT_TABLES);
      const want = [...sqliteColumns].map(([t, cols]) => [
        t,
        (tenantLevel.has(t) ? [...cols, 'org', 'tenant'] : cols).sort(),
      ]);
      const got = [...sqliteColumns.keys()].map((t) => [t, (pgColumns.get(t) ?? []).sort()]);
      assert.deepEqual(got, want);
      assert.deepEqual(
        [...pgColumns.keys()].sort(),
        [...sqliteColumns.keys()].sort(),
        'tables only one side has',
      );
    } finally {
      await store.close();
    }
  });

  test('a superuser role is refused (row-level security would not bind it)', async () => {
    await assert.rejects(PostgresStore.open({ url: server.url }), /superuser or has BYPASSRLS/);
  });
});

describe('row-level security', () => {
  let store: PostgresStore;
  let url: string;
  before(async () => {
    url = await server.createDatabase('rls');
    // One connection: every transaction below reuses the connection the previous one used.
    store = await PostgresStore.open({ url, maxConnections: 1 });
    // Tenant A and B in org o1, and a tenant also named A in org o2 (the org is part of the key).
    await seedTenantRows(store, 'o1', 'A');
    await seedTenantRows(store, 'o1', 'B');
    await seedTenantRows(store, 'o2', 'A');
  });
  after(async () => {
    await store.close();
  });

  test('every tenant-level table, and no other, has forced row-level security and the policy', async () => {
    const r = await store.pool.query<{
      relname: string;
      relrowsecurity: boolean;
      relforcerowsecurity: boolean;
    }>(
      `SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
         WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND (relrowsecurity OR relforcerowsecurity)
         ORDER BY relname`,
    );
    assert.deepEqual(
      r.rows,
      [...TENANT_TABLES]
        .sort()
        .map((relname) => ({ relname, relrowsecurity: true, relforcerowsecurity: true })),
    );
    const p = await store.pool.query<{ tablename: string; qual: string; with_check: string }>(
      'SELECT tablename, qual, with_check FROM pg_policies ORDER BY tablename',
    );
    assert.equal(p.rows.length, TENANT_TABLES.length);
    for (const row of p.rows) {
      for (const expr of [row.qual, row.with_check]) {
        assert.match(expr, /current_setting\('keybroker\.org'/, `${row.tablename} policy: ${expr}`);
        assert.match(expr, /current_setting\('keybroker\.tenant'/, `${row.tablename} policy: ${expr}`);
      }
    }
  });

  /** Tenant tables whose rows reference another tenant table's (by foreign key). */
  const REFERENCING: Partial<Record<(typeof TENANT_TABLES)[number], readonly string[]>> = {
    customers: ['cek_versions'],
    blind_indexes: ['blind_index_versions'],
  };
  for (const table of TENANT_TABLES) {
    test(`${table}: an unfiltered SELECT in tenant o1/A's transaction returns only o1/A's rows`, async () => {
      const rows = await store.withTenant('o1', 'A', (t) => t.query(`SELECT org, tenant FROM ${table}`));
      assert.ok(rows.length > 0, `no rows of o1/A in ${table}`);
      assert.deepEqual(
        rows.filter((r) => r.org !== 'o1' || r.tenant !== 'A'),
        [],
      );
      const all = await store.withTenant('o1', 'B', (t) =>
        t.query(`SELECT COUNT(*)::int AS n FROM ${table}`),
      );
      assert.equal(all[0]?.n, rows.length, 'B sees as many of its rows as A of its own');
    });

    test(`${table}: unfiltered UPDATE and DELETE in o1/A's transaction touch only o1/A's rows`, async () => {
      const rolledBack = new Error('roll back');
      await assert.rejects(
        store.withTenant('o1', 'A', async (t) => {
          await t.query(`UPDATE ${table} SET org = org`);
          // Rows referencing this table's go first (also unfiltered), or the foreign key refuses.
          for (const child of REFERENCING[table] ?? []) await t.query(`DELETE FROM ${child}`);
          const gone = await t.query(`DELETE FROM ${table} RETURNING org, tenant`);
          assert.ok(gone.length > 0);
          assert.deepEqual(
            gone.filter((r) => r.org !== 'o1' || r.tenant !== 'A'),
            [],
          );
          throw rolledBack;
        }),
        (e) => e === rolledBack,
      );
      for (const [org, tenant] of [
        ['o1', 'B'],
        ['o2', 'A'],
        ['o1', 'A'],
      ] as const) {
        const n = await store.withTenant(org, tenant, (t) =>
          t.query(`SELECT COUNT(*)::int AS n FROM ${table}`),
        );
        assert.ok((n[0]?.n as number) > 0, `${org}/${tenant} lost its ${table} rows`);
      }
    });
  }

  const foreignInserts: readonly { name: string; sql: string }[] = [
    {
      name: 'customers',
      sql: `INSERT INTO customers (org, tenant, customer, enabled, state, created_at, primary_cek, rotation_period_s,
              usage_limit, min_enc, min_dec) VALUES ('o1', 'B', 'intruder', true, 'active', '${AT}', 1, 0, 0, 1, 1)`,
    },
    {
      name: 'cek_versions',
      sql: `INSERT INTO cek_versions (org, tenant, customer, version, tek_version, wrapped, state, created_at)
              VALUES ('o1', 'B', 'c-B', 9, 1, '\\x00', 'enabled', '${AT}')`,
    },
    {
      name: 'tenant_keys',
      sql: `INSERT INTO tenant_keys (org, tenant, key_id, version, kind, alg, tek_version, wrapped, state, created_at)
              VALUES ('o2', 'A', 'k-x', 1, 'sig', 'ed25519', 1, '\\x00', 'enabled', '${AT}')`,
    },
    {
      name: 'tenant_key_policies',
      sql: `INSERT INTO tenant_key_policies (org, tenant, key_id, rotation_period_s, usage_limit, min_enc, min_dec)
              VALUES ('o1', 'B', 'k-x', 0, 0, 1, 1)`,
    },
    {
      name: 'blind_indexes',
      sql: `INSERT INTO blind_indexes (org, tenant, name, primary_version, min_version, created_at)
              VALUES ('o1', 'B', 'phone', 1, 1, '${AT}')`,
    },
    {
      name: 'blind_index_versions',
      sql: `INSERT INTO blind_index_versions (org, tenant, name, version, normalization, output_bytes, created_at)
              VALUES ('o1', 'B', 'email', 2, 0, 16, '${AT}')`,
    },
    {
      name: 'blind_index_ceks',
      sql: `INSERT INTO blind_index_ceks (org, tenant, name, version, customer, cek_version)
              VALUES ('o2', 'A', 'email', 1, 'c-x', 1)`,
    },
    {
      name: 'secrets',
      sql: `INSERT INTO secrets (org, tenant, customer, name, current_version, max_versions, created_at, updated_at)
              VALUES ('o1', 'B', 'c-B', 'stolen', 1, 10, '${AT}', '${AT}')`,
    },
    {
      name: 'secret_versions',
      sql: `INSERT INTO secret_versions (org, tenant, customer, name, version, cek_version, blob, state, created_at)
              VALUES ('o1', 'B', 'c-B', 'db-password', 2, 1, '\\x00', 'active', '${AT}')`,
    },
    {
      name: 'import_jobs',
      sql: `INSERT INTO import_jobs (org, tenant, job_id, customer, key_id, alg, wrapping, tek_version, wrapped,
              public_key, created_at, expires_at)
              VALUES ('o1', 'B', 'job-x', '', 'k', 'ml-dsa-65', 'ml-kem-768', 1, '\\x00', '\\x00', '${AT}', '${AT}')`,
    },
    {
      name: 'move a row to tenant B (UPDATE)',
      sql: "UPDATE cek_versions SET tenant = 'B', customer = 'c-B'",
    },
    { name: 'move a row to org o2 (UPDATE)', sql: "UPDATE tenant_key_policies SET org = 'o2'" },
    { name: 'move a secret version to tenant B (UPDATE)', sql: "UPDATE secret_versions SET tenant = 'B'" },
    { name: 'move a blind-index pin to org o2 (UPDATE)', sql: "UPDATE blind_index_ceks SET org = 'o2'" },
  ];
  for (const c of foreignInserts) {
    test(`in o1/A's transaction, writing another tenant's row is refused: ${c.name}`, async () => {
      await assert.rejects(
        store.withTenant('o1', 'A', (t) => t.query(c.sql)),
        /new row violates row-level security policy/,
      );
    });
  }

  test('with no tenant set (also on a connection a tenant transaction used before) nothing is visible', async () => {
    await store.withTenant('o1', 'A', (t) => t.query('SELECT 1'));
    for (const table of TENANT_TABLES) {
      const r = await store.pool.query(`SELECT * FROM ${table}`);
      assert.equal(r.rowCount, 0, `${table} rows visible without a tenant`);
      const u = await store.pool.query(`UPDATE ${table} SET org = org`);
      assert.equal(u.rowCount, 0, `${table} rows updatable without a tenant`);
    }
    await assert.rejects(
      store.pool.query(
        `INSERT INTO tenant_key_policies (org, tenant, key_id, rotation_period_s, usage_limit, min_enc, min_dec)
           VALUES ('o1', 'A', 'k-y', 0, 0, 1, 1)`,
      ),
      /new row violates row-level security policy/,
    );
  });

  test('a fresh connection that never set a tenant sees nothing either', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      for (const table of TENANT_TABLES) {
        assert.equal((await c.query(`SELECT * FROM ${table}`)).rowCount, 0, table);
      }
    } finally {
      await c.end();
    }
  });

  test('the tenant setting does not outlive its transaction, and a leaked tenant or registry store refuses', async () => {
    let leaked: Parameters<Parameters<PostgresStore['withTenant']>[2]>[0] | undefined;
    await store.withTenant('o1', 'A', async (t) => {
      leaked = t;
    });
    const r = await store.pool.query("SELECT current_setting('keybroker.tenant', true) AS t");
    assert.ok(r.rows[0].t === null || r.rows[0].t === '', `setting after commit: ${String(r.rows[0].t)}`);
    await assert.rejects(leaked?.listCustomers() ?? Promise.resolve(), /transaction has ended/);
    await assert.rejects(leaked?.registry.listOrgs() ?? Promise.resolve(), /transaction has ended/);
    let leakedRegistry: PgRegistryStore | undefined;
    await store.registry.tx(async (r) => {
      leakedRegistry = r;
    });
    await assert.rejects(leakedRegistry?.listOrgs() ?? Promise.resolve(), /transaction has ended/);
  });

  const badScopes: readonly { name: string; org: string; tenant: string }[] = [
    { name: 'empty org', org: '', tenant: 'A' },
    { name: 'empty tenant', org: 'o1', tenant: '' },
  ];
  for (const c of badScopes) {
    test(`withTenant refuses an ${c.name}`, async () => {
      await assert.rejects(
        store.withTenant(c.org, c.tenant, (t) => t.query('SELECT 1')),
        /needs an org and a tenant/,
      );
    });
  }
});
