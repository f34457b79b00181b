// The coherence and leadership helpers on a real PostgreSQL server: NOTIFY reaches a listener on
// another connection (a transaction's only at commit), the listener survives its backend being
// killed, and the advisory-lock lease is exclusive and freed when its holder's connection dies.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { PgAdvisoryLease } from '../../daemon/src/store/postgres/pg-advisory-lease.ts';
import { PgNotifier } from '../../daemon/src/store/postgres/pg-notifier.ts';
import { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';
import { startPostgres } from '../support/postgres-server.ts';
import type { PostgresServer } from '../support/postgres-server.ts';
import { seedTenant } from './postgres-fixtures.ts';

let server: PostgresServer;
let url: string;
before(async () => {
  server = await startPostgres();
  url = await server.createDatabase('coherence');
});
after(async () => {
  await server.stop();
});

/** Kill every backend with this application_name, as an operator (superuser) would. */
async function killBackends(applicationName: string): Promise<number> {
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    const r = await c.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
      [applicationName],
    );
    return r.rowCount ?? 0;
  } finally {
    await c.end();
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

describe('LISTEN/NOTIFY', () => {
  test('a notification reaches a listener on another connection; unlisten stops it', async () => {
    const a = await PgNotifier.open({ url });
    const b = await PgNotifier.open({ url });
    try {
      const got: string[] = [];
      const stop = await a.listen('kb_keys', (p) => got.push(p));
      await b.notify('kb_keys', 'rotate o1/t1');
      await b.notify('kb_other', 'not for a');
      await until('delivery', () => got.length === 1);
      assert.deepEqual(got, ['rotate o1/t1']);
      await stop();
      await b.notify('kb_keys', 'after unlisten');
      await b.notify('kb_keys', 'x'); // a round trip on b, then give a's socket time to receive
      await sleep(200);
      assert.deepEqual(got, ['rotate o1/t1']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a tenant transaction's notification arrives at commit, and never from a rollback", async () => {
    const store = await PostgresStore.open({ url });
    await seedTenant(store, 'o', 't');
    const n = await PgNotifier.open({ url });
    try {
      const got: string[] = [];
      await n.listen('kb_tenant', (p) => got.push(p));
      await assert.rejects(
        store.withTenant('o', 't', async (t) => {
          await t.notify('kb_tenant', 'rolled back');
          throw new Error('abort');
        }),
        /abort/,
      );
      await store.withTenant('o', 't', async (t) => {
        await t.notify('kb_tenant', 'committed');
        await sleep(200);
        assert.deepEqual(got, [], 'delivered before commit');
      });
      await until('delivery at commit', () => got.length === 1);
      await store.notify('kb_tenant', 'outside a transaction');
      await until('second delivery', () => got.length === 2);
      assert.deepEqual(got, ['committed', 'outside a transaction']);
    } finally {
      await n.close();
      await store.close();
    }
  });

  test('the listener reconnects after its backend is killed, re-listens, and says so', async () => {
    let reconnects = 0;
    const errors: Error[] = [];
    const a = await PgNotifier.open({
      url,
      applicationName: 'kb-test-listener',
      retryInitialMs: 50,
      onReconnect: () => reconnects++,
      onError: (e) => errors.push(e),
    });
    const b = await PgNotifier.open({ url });
    try {
      const got: string[] = [];
      await a.listen('kb_keys', (p) => got.push(p));
      assert.equal(await killBackends('kb-test-listener'), 1);
      await until('reconnect', () => reconnects === 1 && a.connected);
      assert.ok(errors.length >= 1, 'the connection loss was reported');
      await b.notify('kb_keys', 'after reconnect');
      await until('delivery after reconnect', () => got.length === 1);
      assert.deepEqual(got, ['after reconnect']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  const bad: readonly { name: string; channel: string; payload: string; want: RegExp }[] = [
    { name: 'upper case channel', channel: 'KB', payload: '', want: /channel must match/ },
    { name: 'quoted channel', channel: 'kb"; DROP TABLE orgs; --', payload: '', want: /channel must match/ },
    { name: 'empty channel', channel: '', payload: '', want: /channel must match/ },
    { name: '64-character channel', channel: 'k'.repeat(64), payload: '', want: /channel must match/ },
    {
      name: 'payload of 8000 bytes',
      channel: 'kb',
      payload: 'x'.repeat(8000),
      want: /payload over 7999 bytes/,
    },
  ];
  for (const c of bad) {
    test(`refused: ${c.name}`, async () => {
      const n = await PgNotifier.open({ url });
      try {
        await assert.rejects(n.notify(c.channel, c.payload), c.want);
        if (c.channel !== 'kb')
          await assert.rejects(
            n.listen(c.channel, () => undefined),
            c.want,
          );
      } finally {
        await n.close();
      }
    });
  }
});

describe('advisory-lock lease', () => {
  test('exclusive per name, independent across names, free again after release', async () => {
    const a = await PgAdvisoryLease.tryAcquire({ url, name: 'shred-epoch' });
    assert.ok(a, 'the first broker gets the free lease');
    assert.equal(await PgAdvisoryLease.tryAcquire({ url, name: 'shred-epoch' }), undefined);
    const other = await PgAdvisoryLease.tryAcquire({ url, name: 'rotation-scan' });
    assert.ok(other, 'another name is another lease');
    assert.equal(await a.verify(), true);
    await a.release();
    assert.equal(a.held, false);
    assert.equal(await a.verify(), false);
    const b = await PgAdvisoryLease.tryAcquire({ url, name: 'shred-epoch' });
    assert.ok(b, 'free again after release');
    await b.release();
    await other.release();
  });

  test("released by the server when the holder's connection dies; the holder is told", async () => {
    const lost: (Error | undefined)[] = [];
    const a = await PgAdvisoryLease.tryAcquire({
      url,
      name: 'leader',
      applicationName: 'kb-test-leader',
      onLost: (e) => lost.push(e),
    });
    assert.ok(a);
    assert.equal(await PgAdvisoryLease.tryAcquire({ url, name: 'leader' }), undefined);
    assert.equal(await killBackends('kb-test-leader'), 1);
    await until('holder told of the loss', () => lost.length === 1);
    assert.equal(a.held, false);
    assert.equal(await a.verify(), false);
    let b: PgAdvisoryLease | undefined;
    await until('another broker takes the lease', async () => {
      b = await PgAdvisoryLease.tryAcquire({ url, name: 'leader' });
      return b !== undefined;
    });
    assert.equal(await b?.verify(), true);
    await b?.release();
    await a.release(); // a no-op on a lost lease
    assert.equal(lost.length, 1, 'onLost is called once');
  });

  test('verify() finds the lock for keys of either sign (the 64-bit key is split in pg_locks)', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const signs = new Map<string, string>();
    try {
      for (let i = 0; signs.size < 2 && i < 100; i++) {
        const r = await c.query<{ k: string }>(
          "SELECT hashtextextended('keybroker.lease:' || $1, 0)::text AS k",
          [`lease-${i}`],
        );
        signs.set((r.rows[0]?.k ?? '').startsWith('-') ? 'negative' : 'positive', `lease-${i}`);
      }
    } finally {
      await c.end();
    }
    assert.equal(signs.size, 2);
    for (const [sign, name] of signs) {
      const lease = await PgAdvisoryLease.tryAcquire({ url, name });
      assert.ok(lease, name);
      assert.equal(await lease.verify(), true, `verify() of a held lease with a ${sign} key`);
      await lease.release();
    }
  });
});
