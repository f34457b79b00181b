/**
 * Forward-only schema migrations with a version table. Each migration runs in one transaction
 * with its version row, so a crash leaves either the old or the new schema, never half of one.
 */
import type Database from 'better-sqlite3';

export interface Migration {
  readonly version: number;
  readonly sql: string;
}

/** Apply every migration newer than the recorded version; refuse a file from a newer release. */
export function migrate(db: Database.Database, migrations: readonly Migration[]): number {
  // A read first: CREATE TABLE IF NOT EXISTS takes the write lock (~2 ms per tenant-file open).
  const has = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (!has) db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  const current = row.v ?? 0;
  const newest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  if (current > newest) throw new Error(`schema version ${current} is newer than this build (${newest})`);
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(
        m.version,
        new Date().toISOString(),
      );
    })();
  }
  return newest;
}

/** Pragmas for key storage: WAL, and fsync before a commit returns (a key is acked only once durable). */
export function applyDurablePragmas(db: Database.Database): void {
  // WAL is persistent in the file; setting it again is not free on every open.
  if (db.pragma('journal_mode', { simple: true }) !== 'wal') db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
}
