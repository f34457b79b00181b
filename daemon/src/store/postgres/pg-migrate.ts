/**
 * Forward-only schema migrations for PostgreSQL, like store/migrations.ts for SQLite: a
 * schema_migrations table, each migration in one transaction with its version row, and a schema
 * newer than this build refused. Brokers starting together serialise on a transaction-scoped
 * advisory lock, so each migration runs exactly once.
 */
import type pg from 'pg';
import type { Migration } from '../migrations.ts';
import { transaction } from './pg-transaction.ts';

/** The advisory-lock key of migrations (hashtextextended of a fixed name, as leases use). */
const LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('keybroker.schema-migrations', 0))";

async function currentVersion(c: pg.PoolClient, newest: number): Promise<number> {
  const r = await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations');
  const current = r.rows[0]?.v ?? 0;
  if (current > newest) throw new Error(`schema version ${current} is newer than this build (${newest})`);
  return current;
}

/** Apply every migration newer than the recorded version; returns the schema version now in force. */
export async function migratePg(pool: pg.Pool, migrations: readonly Migration[]): Promise<number> {
  const newest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  await transaction(pool, async (c) => {
    await c.query(LOCK_SQL);
    await c.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)',
    );
    await currentVersion(c, newest);
  });
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    await transaction(pool, async (c) => {
      await c.query(LOCK_SQL);
      // Read again under the lock: another broker may have applied it meanwhile.
      if (m.version <= (await currentVersion(c, newest))) return;
      await c.query(m.sql);
      await c.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [
        m.version,
        new Date().toISOString(),
      ]);
    });
  }
  return newest;
}
