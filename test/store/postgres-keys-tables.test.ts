// The PostgreSQL mirrors of the store files the keys layer uses beside TenantStore/RegistryStore
// (blind-index-rows.ts, secret-rows.ts, shred-intents.ts, registry-audit-head.ts), each checked
// against the SQLite original: one script of calls runs on both backends and must log the same
// results. Plus: in a tenant transaction they see only that tenant's rows.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as sqlBlind from '../../daemon/src/store/blind-index-rows.ts';
import { RegistryAuditHead } from '../../daemon/src/store/registry-audit-head.ts';
import { RegistryStore } from '../../daemon/src/store/registry-store.ts';
import * as sqlSecret from '../../daemon/src/store/secret-rows.ts';
import { ShredIntents } from '../../daemon/src/store/shred-intents.ts';
import { TenantStore } from '../../daemon/src/store/tenant-store.ts';
import * as pgBlind from '../../daemon/src/store/postgres/pg-blind-index-rows.ts';
import { PgRegistryAuditHead } from '../../daemon/src/store/postgres/pg-registry-audit-head.ts';
import * as pgSecret from '../../daemon/src/store/postgres/pg-secret-rows.ts';
import { PgShredIntents } from '../../daemon/src/store/postgres/pg-shred-intents.ts';
import type { PgTenantStore } from '../../daemon/src/store/postgres/pg-tenant-store.ts';
import { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';
import { startPostgres } from '../support/postgres-server.ts';
import type { PostgresServer } from '../support/postgres-server.ts';
import { AT, seedTenant, seedTenantRows } from './postgres-fixtures.ts';

let server: PostgresServer;
let store: PostgresStore;
const dir = mkdtempSync(join(tmpdir(), 'kb-pgkeys-'));
before(async () => {
  server = await startPostgres();
  store = await PostgresStore.open({ url: await server.createDatabase('keys_tables') });
});
after(async () => {
  await store.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Log = [string, unknown][];
/** Runs a step and logs what it returned or the message it threw. */
async function step(log: Log, name: string, fn: () => unknown): Promise<void> {
  try {
    log.push([name, await fn()]);
  } catch (e) {
    log.push([name, `threw ${e instanceof Error ? e.message : String(e)}`]);
  }
}
function assertSameLogs(got: Log, want: Log): void {
  assert.equal(got.length, want.length);
  for (const [i, w] of want.entries()) assert.deepEqual(got[i], w, `step ${w[0]}`);
}

/** The blind-index functions of either backend, under one shape (PostgreSQL's are async). */
interface BlindApi {
  get(name: string): unknown;
  list(): unknown;
  versions(name: string): unknown;
  add(v: sqlBlind.BlindIndexVersionRow): unknown;
  setMin(name: string, min: number): unknown;
  pin(name: string, version: number, customer: string, primaryCek: number): unknown;
}
const sqliteBlind = (s: TenantStore): BlindApi => ({
  get: (n) => sqlBlind.getBlindIndex(s, n),
  list: () => sqlBlind.listBlindIndexes(s),
  versions: (n) => sqlBlind.listBlindIndexVersions(s, n),
  add: (v) => sqlBlind.addBlindIndexVersion(s, v),
  setMin: (n, m) => sqlBlind.setBlindIndexMinVersion(s, n, m),
  pin: (n, v, c, p) => sqlBlind.pinBlindIndexCek(s, n, v, c, p),
});
const postgresBlind = (t: PgTenantStore): BlindApi => ({
  get: (n) => pgBlind.pgGetBlindIndex(t, n),
  list: () => pgBlind.pgListBlindIndexes(t),
  versions: (n) => pgBlind.pgListBlindIndexVersions(t, n),
  add: (v) => pgBlind.pgAddBlindIndexVersion(t, v),
  setMin: (n, m) => pgBlind.pgSetBlindIndexMinVersion(t, n, m),
  pin: (n, v, c, p) => pgBlind.pgPinBlindIndexCek(t, n, v, c, p),
});
const indexVersion = (name: string, version: number): sqlBlind.BlindIndexVersionRow => ({
  name,
  version,
  normalization: version,
  outputBytes: version % 2 === 0 ? 32 : 16,
  createdAt: AT,
});

async function blindScript(b: BlindApi): Promise<Log> {
  const log: Log = [];
  await step(log, 'get missing', () => b.get('email'));
  await step(log, 'add v1', () => b.add(indexVersion('email', 1)));
  await step(log, 'add other v1', () => b.add(indexVersion('phone', 1)));
  await step(log, 'add v2', () => b.add(indexVersion('email', 2)));
  await step(log, 'add v2 again (primary moved)', () => b.add(indexVersion('email', 2)));
  await step(log, 'add v4 (skips 3: primary moved)', () => b.add(indexVersion('email', 4)));
  await step(log, 'setMin', () => b.setMin('email', 2));
  await step(log, 'get', () => b.get('email'));
  await step(log, 'list', () => b.list());
  await step(log, 'versions', () => b.versions('email'));
  await step(log, 'versions missing', () => b.versions('none'));
  await step(log, 'pin first use', () => b.pin('email', 2, 'c1', 3));
  await step(log, 'pin after a CEK rotation keeps the first', () => b.pin('email', 2, 'c1', 4));
  await step(log, 'pin another customer', () => b.pin('email', 2, 'c2', 4));
  await step(log, 'pin another version', () => b.pin('email', 1, 'c1', 4));
  return log;
}

interface SecretApi {
  get(c: string, n: string): unknown;
  list(c: string): unknown;
  version(c: string, n: string, v: number): unknown;
  versions(c: string, n: string): unknown;
  append(v: sqlSecret.SecretVersionRow & { readonly blob: Uint8Array }, max: number): unknown;
  setState(c: string, n: string, v: readonly number[], s: 'active' | 'deleted'): unknown;
  destroy(c: string, n: string, v: readonly number[]): unknown;
}
const sqliteSecret = (s: TenantStore): SecretApi => ({
  get: (c, n) => sqlSecret.getSecret(s, c, n),
  list: (c) => sqlSecret.listSecrets(s, c),
  version: (c, n, v) => sqlSecret.getSecretVersion(s, c, n, v),
  versions: (c, n) => sqlSecret.listSecretVersions(s, c, n),
  append: (v, m) => sqlSecret.appendSecretVersion(s, v, m),
  setState: (c, n, v, st) => sqlSecret.setSecretVersionsState(s, c, n, v, st),
  destroy: (c, n, v) => sqlSecret.destroySecretVersions(s, c, n, v),
});
const postgresSecret = (t: PgTenantStore): SecretApi => ({
  get: (c, n) => pgSecret.pgGetSecret(t, c, n),
  list: (c) => pgSecret.pgListSecrets(t, c),
  version: (c, n, v) => pgSecret.pgGetSecretVersion(t, c, n, v),
  versions: (c, n) => pgSecret.pgListSecretVersions(t, c, n),
  append: (v, m) => pgSecret.pgAppendSecretVersion(t, v, m),
  setState: (c, n, v, st) => pgSecret.pgSetSecretVersionsState(t, c, n, v, st),
  destroy: (c, n, v) => pgSecret.pgDestroySecretVersions(t, c, n, v),
});
const sealed = (customer: string, name: string, version: number) => ({
  customer,
  name,
  version,
  cekVersion: version + 1,
  blob: new Uint8Array(Buffer.from(`sealed:${customer}/${name}/${version}`)),
  state: 'active' as const,
  createdAt: `2026-12-07T12:00:0${version}.000Z`,
});

async function secretScript(s: SecretApi): Promise<Log> {
  const log: Log = [];
  await step(log, 'get missing', () => s.get('c1', 'db'));
  await step(log, 'append 2 first (moved)', () => s.append(sealed('c1', 'db', 2), 3));
  await step(log, 'append 1', () => s.append(sealed('c1', 'db', 1), 3));
  await step(log, 'append 1 again (moved)', () => s.append(sealed('c1', 'db', 1), 3));
  await step(log, 'append 2', () => s.append(sealed('c1', 'db', 2), 3));
  await step(log, 'append 3', () => s.append(sealed('c1', 'db', 3), 3));
  await step(log, 'append 4 (drops 1)', () => s.append(sealed('c1', 'db', 4), 3));
  await step(log, 'append 3 again (moved)', () => s.append(sealed('c1', 'db', 3), 3));
  await step(log, 'append 5 with max 2 (drops 2 and 3)', () => s.append(sealed('c1', 'db', 5), 2));
  await step(log, 'another secret', () => s.append(sealed('c1', 'api', 1), 5));
  await step(log, 'another customer', () => s.append(sealed('c2', 'db', 1), 5));
  await step(log, 'get', () => s.get('c1', 'db'));
  await step(log, 'list', () => s.list('c1'));
  await step(log, 'versions', () => s.versions('c1', 'db'));
  await step(log, 'soft delete 4', () => s.setState('c1', 'db', [4], 'deleted'));
  await step(log, 'destroy 5', () => s.destroy('c1', 'db', [5]));
  await step(log, 'undelete 4 and 5 (destroyed stays)', () => s.setState('c1', 'db', [4, 5], 'active'));
  await step(log, 'version 5', () => s.version('c1', 'db', 5));
  await step(log, 'version missing', () => s.version('c1', 'db', 1));
  await step(log, 'versions after', () => s.versions('c1', 'db'));
  await step(log, 'other customer untouched', () => s.versions('c2', 'db'));
  return log;
}

interface RegistryExtrasApi {
  intents: {
    insert(i: Parameters<ShredIntents['insert']>[0]): unknown;
    started(id: number, shredId: number): unknown;
    abandon(id: number): unknown;
    get(id: number): unknown;
    listPending(): unknown;
    byApproval(a: string): unknown;
  };
  head: {
    load(): unknown;
    save(h: { seq: number; hash: string; state: 'running' | 'stopped' | 'reset' }): unknown;
    reset(): unknown;
  };
}

async function registryExtrasScript(r: RegistryExtrasApi): Promise<Log> {
  const log: Log = [];
  const intent = (tenant: string, approvalId: string | null) => ({
    kind: 'tenant' as const,
    org: 'o1',
    tenant,
    customer: null,
    approvalId,
    requestedAt: AT,
  });
  await step(log, 'insert', () => r.intents.insert(intent('a', 'ap-1')));
  await step(log, 'insert 2', () => r.intents.insert(intent('b', 'ap-2')));
  await step(log, 'insert customer', () =>
    r.intents.insert({ ...intent('a', null), kind: 'customer', customer: 'c1' }),
  );
  await step(log, 'insert ap-1 retry', () => r.intents.insert(intent('a', 'ap-1')));
  await step(log, 'started', () => r.intents.started(1, 7));
  await step(log, 'started again (not pending: no change)', () => r.intents.started(1, 8));
  await step(log, 'abandon', () => r.intents.abandon(4));
  await step(log, 'abandon started (no change)', () => r.intents.abandon(1));
  await step(log, 'get', () => r.intents.get(1));
  await step(log, 'get missing', () => r.intents.get(99));
  await step(log, 'listPending', () => r.intents.listPending());
  await step(log, 'byApproval skips abandoned', () => r.intents.byApproval('ap-1'));
  await step(log, 'byApproval missing', () => r.intents.byApproval('ap-9'));
  await step(log, 'head load empty', () => r.head.load());
  await step(log, 'head reset empty', () => r.head.reset());
  await step(log, 'head save', () => r.head.save({ seq: 2 ** 40, hash: 'h1', state: 'running' }));
  await step(log, 'head save again', () => r.head.save({ seq: 2 ** 40 + 5, hash: 'h2', state: 'stopped' }));
  await step(log, 'head load', () => r.head.load());
  await step(log, 'head reset', () => r.head.reset());
  await step(log, 'head load after reset', () => r.head.load());
  return log;
}

describe('PostgreSQL mirrors of the keys-layer tables give what the SQLite ones give', () => {
  test('blind indexes (blind-index-rows.ts)', async () => {
    await seedTenant(store, 'bi-org', 'a');
    const sqlite = TenantStore.open(join(dir, 'blind.db'), true);
    try {
      const want = await blindScript(sqliteBlind(sqlite));
      const got = await store.withTenant('bi-org', 'a', (t) => blindScript(postgresBlind(t)));
      assertSameLogs(got, want);
      assert.deepEqual(
        want.filter(([, v]) => typeof v === 'string' && v.startsWith('threw')).map(([n]) => n),
        ['add v2 again (primary moved)', 'add v4 (skips 3: primary moved)'],
      );
    } finally {
      sqlite.close();
    }
  });

  test('secrets (secret-rows.ts)', async () => {
    await seedTenant(store, 'se-org', 'a');
    const sqlite = TenantStore.open(join(dir, 'secrets.db'), true);
    try {
      const want = await secretScript(sqliteSecret(sqlite));
      const got = await store.withTenant('se-org', 'a', (t) => secretScript(postgresSecret(t)));
      assertSameLogs(got, want);
      assert.deepEqual(
        want.filter(([n]) => n.startsWith('append')).map(([, v]) => v),
        [false, true, false, true, true, true, false, true],
      );
    } finally {
      sqlite.close();
    }
  });

  test('shred intents and the audit head (shred-intents.ts, registry-audit-head.ts)', async () => {
    const sqlite = RegistryStore.open(join(dir, 'registry.db'));
    const db = await server.createDatabase('keys_tables_registry');
    const pgStore = await PostgresStore.open({ url: db });
    try {
      const want = await registryExtrasScript({
        intents: new ShredIntents(sqlite),
        head: new RegistryAuditHead(sqlite),
      });
      const got = await registryExtrasScript({
        intents: new PgShredIntents(pgStore.registry),
        head: new PgRegistryAuditHead(pgStore.registry),
      });
      assertSameLogs(got, want);
    } finally {
      sqlite.close();
      await pgStore.close();
    }
  });
});

describe("in a tenant transaction, the mirrors see only that tenant's rows", () => {
  before(async () => {
    await seedTenantRows(store, 'x1', 'A');
    await seedTenantRows(store, 'x1', 'B');
  });
  const cases: readonly { name: string; run: (t: PgTenantStore) => Promise<unknown>; want: unknown }[] = [
    { name: 'listBlindIndexes', run: (t) => pgBlind.pgListBlindIndexes(t), want: 1 },
    { name: 'listBlindIndexVersions', run: (t) => pgBlind.pgListBlindIndexVersions(t, 'email'), want: 1 },
    { name: "listSecrets of B's customer", run: (t) => pgSecret.pgListSecrets(t, 'c-B'), want: 0 },
    {
      name: "listSecretVersions of B's secret",
      run: (t) => pgSecret.pgListSecretVersions(t, 'c-B', 'db-password'),
      want: 0,
    },
    {
      name: "getSecret of B's secret",
      run: (t) => pgSecret.pgGetSecret(t, 'c-B', 'db-password'),
      want: undefined,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const got = await store.withTenant('x1', 'A', (t) => c.run(t));
      assert.deepEqual(Array.isArray(got) ? got.length : got, c.want);
    });
  }

  test("appending to, destroying or pinning in tenant B's rows from A's transaction changes nothing of B's", async () => {
    await store.withTenant('x1', 'A', async (t) => {
      assert.equal(await pgSecret.pgAppendSecretVersion(t, sealed('c-B', 'db-password', 2), 5), false);
      await pgSecret.pgDestroySecretVersions(t, 'c-B', 'db-password', [1]);
      await pgBlind.pgSetBlindIndexMinVersion(t, 'email', 9);
    });
    const b = await store.withTenant('x1', 'B', async (t) => ({
      secret: await pgSecret.pgGetSecret(t, 'c-B', 'db-password'),
      version: await pgSecret.pgGetSecretVersion(t, 'c-B', 'db-password', 1),
      index: await pgBlind.pgGetBlindIndex(t, 'email'),
    }));
    assert.equal(b.secret?.currentVersion, 1);
    assert.equal(b.version?.state, 'active');
    assert.ok(b.version?.blob !== undefined, "B's blob survived");
    assert.equal(b.index?.minVersion, 1);
  });
});
