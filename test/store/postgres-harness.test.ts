// The throwaway PostgreSQL harness itself: several servers start side by side (as parallel test
// files start them), each on its own loopback port and dir, and stop() leaves nothing behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { startPostgres } from '../support/postgres-server.ts';

async function ask(url: string, sql: string): Promise<unknown> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query(sql)).rows[0];
  } finally {
    await c.end();
  }
}

test('three servers started at once: distinct ports and dirs, each serves; stop removes everything', async () => {
  const servers = await Promise.all([startPostgres(), startPostgres(), startPostgres()]);
  try {
    assert.equal(new Set(servers.map((s) => s.port)).size, 3);
    assert.equal(new Set(servers.map((s) => s.dir)).size, 3);
    for (const s of servers) {
      assert.deepEqual(
        await ask(s.url, "SELECT current_user AS u, current_setting('listen_addresses') AS l"),
        {
          u: 'kb',
          l: '127.0.0.1',
        },
      );
      const dbUrl = await s.createDatabase('probe');
      assert.deepEqual(await ask(dbUrl, 'SELECT current_user AS u, current_database() AS d'), {
        u: 'probe',
        d: 'probe',
      });
      assert.deepEqual(await ask(dbUrl, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user'), {
        rolsuper: false,
      });
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
  for (const s of servers) {
    assert.equal(existsSync(s.dir), false, `${s.dir} left behind`);
    await assert.rejects(ask(s.url, 'SELECT 1'), /ECONNREFUSED/, `server on ${s.port} still answers`);
  }
});
