// Stores on real SQLite files: migrations with a version table, durable pragmas, the bounded LRU
// of tenant files, and file deletion that leaves no -wal/-shm behind.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { migrate } from '../../daemon/src/store/migrations.ts';
import { RegistryStore } from '../../daemon/src/store/registry-store.ts';
import { TenantStorePool } from '../../daemon/src/store/tenant-store-pool.ts';

const root = mkdtempSync(join(tmpdir(), 'kb-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('migrations: applied once, recorded, and a newer file is refused', () => {
  const db = new Database(join(root, 'm.db'));
  const m = [
    { version: 1, sql: 'CREATE TABLE a (x INTEGER)' },
    { version: 2, sql: 'CREATE TABLE b (y INTEGER)' },
  ];
  assert.equal(migrate(db, m.slice(0, 1)), 1);
  assert.equal(migrate(db, m), 2);
  assert.equal(migrate(db, m), 2, 're-running is a no-op');
  const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as {
    version: number;
  }[];
  assert.deepEqual(
    rows.map((r) => r.version),
    [1, 2],
  );
  assert.throws(() => migrate(db, m.slice(0, 1)), /newer than this build/);
  db.close();
});

test('registry: WAL and synchronous=FULL (a key is acknowledged only once durable)', () => {
  const r = RegistryStore.open(join(root, 'registry.db'));
  assert.equal(r.db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(r.db.pragma('synchronous', { simple: true }), 2, 'synchronous must be FULL (2)');
  r.close();
});

test('tenant file pool: bounded open handles, evicted files reopen, deleteFiles removes db, -wal, -shm', () => {
  const pool = new TenantStorePool(root, 3);
  const names = Array.from({ length: 10 }, (_, i) => `tenants/o/t${i}.db`);
  for (const n of names) {
    const s = pool.get(n, true);
    s.db.exec('CREATE TABLE IF NOT EXISTS probe (x INTEGER)');
    s.db.prepare('INSERT INTO probe VALUES (1)').run();
    assert.ok(pool.openCount <= 3, `open handles ${pool.openCount} > 3`);
  }
  // The first file was evicted (closed); it reopens with its data.
  const first = pool.get(names[0] as string);
  assert.deepEqual(first.db.prepare('SELECT COUNT(*) AS n FROM probe').get(), { n: 1 });
  assert.throws(() => pool.get('tenants/o/missing.db'), 'opening a missing tenant file must not create it');
  const n1 = names[1] as string;
  pool.get(n1);
  assert.ok(existsSync(join(root, `${n1}-wal`)), 'WAL file exists while open');
  pool.deleteFiles(n1);
  const left = readdirSync(join(root, 'tenants/o')).filter((f) => f.startsWith('t1.db'));
  assert.deepEqual(left, [], `files left after delete: ${left.join(',')}`);
  pool.closeAll();
  assert.equal(pool.openCount, 0);
});
