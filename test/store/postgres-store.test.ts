// PostgresStore's methods against a real PostgreSQL server, each checked against the SQLite store
// it mirrors: one script of calls runs on both backends and must log the same results (rows,
// returned ids and versions, errors). tenant_keys, whose SQLite statements live in the keys
// layer, is checked against AsymmetricKeyStore the same way.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AsymmetricKeyStore } from '../../daemon/src/keys/asymmetric-key-store.ts';
import type { AsymmetricKeyRow, AsymmetricKeyType } from '../../daemon/src/keys/asymmetric-key-store.ts';
import { RegistryStore, StaleOekError } from '../../daemon/src/store/registry-store.ts';
import { TenantStore } from '../../daemon/src/store/tenant-store.ts';
import type { PgRegistryStore } from '../../daemon/src/store/postgres/pg-registry-store.ts';
import type { PgTenantStore } from '../../daemon/src/store/postgres/pg-tenant-store.ts';
import type { TenantKeyVersionRow } from '../../daemon/src/store/postgres/pg-rows.ts';
import { TENANT_TABLES } from '../../daemon/src/store/postgres/pg-schema.ts';
import { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';
import { startPostgres } from '../support/postgres-server.ts';
import type { PostgresServer } from '../support/postgres-server.ts';
import {
  AT,
  cekRow,
  customerRow,
  keyRow,
  oekRow,
  orgRow,
  seedTenant,
  seedTenantRows,
  tekRow,
  tenantRow,
} from './postgres-fixtures.ts';

let server: PostgresServer;
const dir = mkdtempSync(join(tmpdir(), 'kb-pgparity-'));
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Log = [string, unknown][];
/** Runs a step and logs what it returned or which error class it threw. */
async function step(log: Log, name: string, fn: () => unknown): Promise<void> {
  try {
    log.push([name, await fn()]);
  } catch (e) {
    log.push([name, `threw ${e instanceof StaleOekError ? 'StaleOekError' : 'other'}`]);
  }
}

/** Every RegistryStore method the keys layer uses, in a lifecycle order. */
async function registryScript(r: RegistryStore | PgRegistryStore): Promise<Log> {
  const log: Log = [];
  await step(log, 'insertOrg', () => r.insertOrg(orgRow('o1'), oekRow('o1')));
  await step(log, 'insertOrg o2', () => r.insertOrg({ ...orgRow('o2'), enabled: false }, oekRow('o2')));
  await step(log, 'getOrg', () => r.getOrg('o1'));
  await step(log, 'getOrg missing', () => r.getOrg('nope'));
  await step(log, 'setOrgEnabled', () => r.setOrgEnabled('o2', true));
  await step(log, 'listOrgs', () => r.listOrgs());
  await step(log, 'insertTenant', () => r.insertTenant(tenantRow('o1', 'a'), tekRow('o1', 'a')));
  await step(log, 'insertTenant stale OEK', () =>
    r.insertTenant(tenantRow('o1', 'x'), tekRow('o1', 'x', 1, 2)),
  );
  await step(log, 'insertTenant duplicate', () => r.insertTenant(tenantRow('o1', 'a'), tekRow('o1', 'a')));
  const batch = ['a', 'b', 'c'].map((t) => ({ tenant: tenantRow('o1', t), tek: tekRow('o1', t) }));
  await step(log, 'insertTenants skips existing', async () => [...(await r.insertTenants(batch))]);
  await step(log, 'insertTenants stale OEK', async () => [
    ...(await r.insertTenants([{ tenant: tenantRow('o1', 'y'), tek: tekRow('o1', 'y', 1, 7) }])),
  ]);
  await step(log, 'getTenant', () => r.getTenant('o1', 'b'));
  await step(log, 'getTenant y (rolled back)', () => r.getTenant('o1', 'y'));
  await step(log, 'setTenantEnabled', () => r.setTenantEnabled('o1', 'b', false));
  const policy = { rotationPeriodS: 60, usageLimit: 2 ** 40, minEnc: 2, minDec: 1 };
  await step(log, 'setTenantPolicy', () => r.setTenantPolicy('o1', 'c', policy));
  await step(log, 'listTenants', () => r.listTenants('o1'));
  await step(log, 'insertTek 2', () => r.insertTek(tekRow('o1', 'a', 2)));
  await step(log, 'insertTek 3', () => r.insertTek(tekRow('o1', 'a', 3)));
  await step(log, 'insertTek stale', () => r.insertTek(tekRow('o1', 'a', 4, 9)));
  await step(log, 'setPrimaryTek', () => r.setPrimaryTek('o1', 'a', 3));
  await step(log, 'setTekState', () => r.setTekState('o1', 'a', 2, 'disabled'));
  await step(log, 'addTekUses', () =>
    r.addTekUses([
      { org: 'o1', tenant: 'a', version: 3, n: 5 },
      { org: 'o1', tenant: 'a', version: 3, n: 2 ** 33 },
      { org: 'o1', tenant: 'b', version: 1, n: 1 },
    ]),
  );
  await step(log, 'getTek', () => r.getTek('o1', 'a', 3));
  await step(log, 'listTeks', () => r.listTeks('o1', 'a'));
  await step(log, 'deleteTeksBelow', () => r.deleteTeksBelow('o1', 'a', 3));
  await step(log, 'insertOek 2', () => r.insertOek({ ...oekRow('o1', 2), state: 'enabled' }));
  await step(log, 'setOekState', () => r.setOekState('o1', 1, 'retired', null));
  await step(log, 'setPrimaryOek', () => r.setPrimaryOek('o1', 2));
  await step(log, 'listOeks', () => r.listOeks('o1'));
  await step(log, 'getOek', () => r.getOek('o1', 1));
  await step(log, 'countTeksNotUnder', () => r.countTeksNotUnder('o1', 2));
  const stale = await r.listTeksNotUnder('o1', 2, 2);
  log.push(['listTeksNotUnder (limit 2) count', stale.length]);
  await step(log, 'rewrapTeks', () =>
    r.rewrapTeks([
      ...stale.map((t) => ({ ...t, fromOek: 1, toOek: 2, wrapped: new Uint8Array([t.version, 0xee]) })),
      // A row read under another OEK than it is now under is left alone.
      { org: 'o1', tenant: 'c', version: 1, fromOek: 5, toOek: 2, wrapped: new Uint8Array([0xff]) },
    ]),
  );
  await step(log, 'countTeksNotUnder after', () => r.countTeksNotUnder('o1', 2));
  await step(log, 'all TEKs after rewrap', async () =>
    (await Promise.all(['a', 'b', 'c'].map((t) => r.listTeks('o1', t)))).flat(),
  );
  await step(log, 'insertEpoch', () =>
    r.insertEpoch({
      org: 'o1',
      state: 'generating',
      destroyOld: true,
      newOek: 3,
      newLabel: 'l3',
      oldOeks: [1, 2],
      createdAt: AT,
    }),
  );
  await step(log, 'setEpochLabel', () => r.setEpochLabel(1, 'l3b'));
  await step(log, 'listUnfinishedEpochs', () => r.listUnfinishedEpochs());
  await step(log, 'setEpochState', () => r.setEpochState(1, 'done', AT));
  await step(log, 'setEpochLabel when done (ignored)', () => r.setEpochLabel(1, 'l3c'));
  await step(log, 'getEpoch', () => r.getEpoch(1));
  await step(log, 'listUnfinishedEpochs after', () => r.listUnfinishedEpochs());
  const shred = { kind: 'customer', org: 'o1', tenant: 'a', customer: 'c1', state: 'tek-rotation' } as const;
  await step(log, 'insertShred', () => r.insertShred({ ...shred, requestedAt: AT, detail: '{}' }));
  await step(log, 'updateShred', () => r.updateShred(1, { state: 'epoch', epochId: 1 }));
  await step(log, 'updateShred receipt', () => r.updateShred(1, { state: 'epoch', receipt: 'sig' }));
  await step(log, 'markTenantDestroyed', () => r.markTenantDestroyed('o1', 'b', AT, '{"teks":[1]}'));
  await step(log, 'getShred', () => r.getShred(1));
  await step(log, 'listUnfinishedShreds', () => r.listUnfinishedShreds());
  await step(log, 'listActiveTenants', () => r.listActiveTenants());
  await step(log, 'listDestroyedTenants', () => r.listDestroyedTenants());
  await step(log, 'listTeks of destroyed', () => r.listTeks('o1', 'b'));
  await step(log, 'insertBrokerKey', () =>
    r.insertBrokerKey('receipt', 'kb-r', 'ecdsa-p256', new Uint8Array([1, 2])),
  );
  await step(log, 'getBrokerKey', () => r.getBrokerKey('receipt'));
  await step(log, 'getBrokerKey missing', () => r.getBrokerKey('other'));
  await step(log, 'metaValue first use', () => r.metaValue('instance', () => 'id-1'));
  await step(log, 'metaValue kept', () => r.metaValue('instance', () => 'id-2'));
  return log;
}

/** Every TenantStore method, in a lifecycle order (tenant o1/a; its registry rows exist). */
/** Tenant-level key rows (the TEK wraps them): the keys layer's view on SQLite, the store's on PostgreSQL. */
async function tenantLevelKeys(s: TenantStore | PgTenantStore) {
  if (s instanceof TenantStore)
    return AsymmetricKeyStore.all(s)
      .filter((k) => k.customer === '')
      .map((k) => ({ keyId: k.keyId, version: k.version, tekVersion: k.tekVersion, wrapped: k.wrapped }));
  return s.listTenantKeys();
}

async function tenantScript(s: TenantStore | PgTenantStore): Promise<Log> {
  const log: Log = [];
  await step(log, 'insertCustomer', () => s.insertCustomer(customerRow('c1'), cekRow('c1')));
  await step(log, 'insertCustomer 2', () => s.insertCustomer(customerRow('c2'), cekRow('c2')));
  await step(log, 'getCustomer', () => s.getCustomer('c1'));
  await step(log, 'getCustomer missing', () => s.getCustomer('zz'));
  await step(log, 'setCustomerEnabled', () => s.setCustomerEnabled('c2', false));
  const p = { rotationPeriodS: 5, usageLimit: 2 ** 41, minEnc: 3, minDec: 2 };
  await step(log, 'setCustomerPolicy', () => s.setCustomerPolicy('c1', p));
  await step(log, 'listCustomers', () => s.listCustomers());
  await step(log, 'addPrimaryCek', () => s.addPrimaryCek(cekRow('c1', 2)));
  await step(log, 'setCekState', () => s.setCekState('c1', 1, 'disabled'));
  await step(log, 'addCekUses', () =>
    s.addCekUses([
      { customer: 'c1', version: 2, n: 3 },
      { customer: 'c1', version: 2, n: 4 },
      { customer: 'c2', version: 1, n: 2 ** 35 },
    ]),
  );
  await step(log, 'getCek', () => s.getCek('c1', 2));
  await step(log, 'listCeks', () => s.listCeks('c1'));
  await step(log, 'listTenantKeys (tenant-level only)', async () => sortKeys(await tenantLevelKeys(s)));
  await step(log, 'rewrapAll', async () =>
    s.rewrapAll(
      (await s.listAllCeks()).map((c) => ({ ...c, tekVersion: 2, wrapped: new Uint8Array([c.version, 2]) })),
      (await tenantLevelKeys(s)).map((k) => ({
        ...k,
        tekVersion: 2,
        wrapped: new Uint8Array([k.version, 9]),
      })),
    ),
  );
  await step(log, 'listAllCeks', async () =>
    (await s.listAllCeks()).sort((a, b) => a.customer.localeCompare(b.customer) || a.version - b.version),
  );
  await step(log, 'listTenantKeys after rewrap', async () => sortKeys(await tenantLevelKeys(s)));
  await step(log, 'destroyCustomer', () => s.destroyCustomer('c1'));
  await step(log, 'getCustomer destroyed', () => s.getCustomer('c1'));
  await step(log, 'listCeks destroyed', () => s.listCeks('c1'));
  await step(log, 'listTenantKeys after destroy', async () => sortKeys(await tenantLevelKeys(s)));
  return log;
}
const sortKeys = <T extends { keyId: string; version: number }>(k: T[]): T[] =>
  k.sort((a, b) => a.keyId.localeCompare(b.keyId) || a.version - b.version);

/** The keys layer's AsymmetricKeyRow from a PostgreSQL tenant_keys row. */
const asAsymmetric = (r: TenantKeyVersionRow): AsymmetricKeyRow => ({
  keyId: r.keyId,
  version: r.version,
  type: r.alg as AsymmetricKeyType,
  customer: r.customer,
  tekVersion: r.tekVersion,
  cekVersion: r.cekVersion,
  uses: r.uses,
  wrapped: r.wrapped,
  publicKey: r.publicKey ?? new Uint8Array(0),
  state: r.state as AsymmetricKeyRow['state'],
  createdAt: r.createdAt,
  meta: JSON.parse(r.meta) as AsymmetricKeyRow['meta'],
});
const KEYS = [keyRow('k-tenant', 1), keyRow('k-tenant', 2), keyRow('k-cust', 1, 'c1'), keyRow('k-other', 1)];

describe('PostgresStore mirrors the SQLite stores', () => {
  let store: PostgresStore;
  before(async () => {
    store = await PostgresStore.open({ url: await server.createDatabase('parity') });
  });
  after(async () => {
    await store.close();
  });

  test('registry: every method gives what RegistryStore gives', async () => {
    const sqlite = RegistryStore.open(join(dir, 'registry.db'));
    try {
      const want = await registryScript(sqlite);
      const got = await registryScript(store.registry);
      assert.equal(got.length, want.length);
      for (const [i, w] of want.entries()) assert.deepEqual(got[i], w, `step ${w[0]}`);
      // The script covered the error paths it meant to.
      assert.deepEqual(
        want
          .filter(([, v]) => typeof v === 'string' && v.startsWith('threw'))
          .map(([n, v]) => `${n}: ${String(v)}`),
        [
          'insertTenant stale OEK: threw StaleOekError',
          'insertTenant duplicate: threw other',
          'insertTenants stale OEK: threw StaleOekError',
          'insertTek stale: threw StaleOekError',
        ],
      );
    } finally {
      sqlite.close();
    }
  });

  test('tenant rows: every method gives what TenantStore gives; tenant_keys what AsymmetricKeyStore gives', async () => {
    await seedTenant(store, 't-org', 'a');
    const sqlite = TenantStore.open(join(dir, 'tenant.db'), true);
    try {
      for (const k of KEYS) AsymmetricKeyStore.insert(sqlite, { ...asAsymmetric({ ...k, uses: 0 }) });
      await store.withTenant('t-org', 'a', async (t) => {
        for (const k of KEYS) await t.insertKey(k);
      });
      const want = await tenantScript(sqlite);
      const got = await store.withTenant('t-org', 'a', (t) => tenantScript(t));
      assert.equal(got.length, want.length);
      for (const [i, w] of want.entries()) assert.deepEqual(got[i], w, `step ${w[0]}`);

      // tenant_keys: the keys layer's statements against PgTenantStore's.
      const policy = { rotationPeriodS: 30, usageLimit: 9, minEnc: 2, minDec: 1 };
      AsymmetricKeyStore.setPolicy(sqlite, 'k-tenant', policy);
      AsymmetricKeyStore.setPolicy(sqlite, 'k-tenant', { ...policy, usageLimit: 10 });
      AsymmetricKeyStore.addUses(sqlite, [
        { keyId: 'k-tenant', version: 2, n: 4 },
        { keyId: 'k-other', version: 1, n: 1 },
      ]);
      const v1 = AsymmetricKeyStore.get(sqlite, 'k-tenant', 1);
      assert.ok(v1 !== undefined && AsymmetricKeyStore.replaceWrapped(sqlite, v1, v1.wrapped, 'disabled'));
      const pgKeys = await store.withTenant('t-org', 'a', async (t) => {
        await t.setKeyPolicy('k-tenant', policy);
        await t.setKeyPolicy('k-tenant', { ...policy, usageLimit: 10 });
        await t.addKeyUses([
          { keyId: 'k-tenant', version: 2, n: 4 },
          { keyId: 'k-other', version: 1, n: 1 },
        ]);
        await t.setKeyState('k-tenant', 1, 'disabled');
        return {
          all: (await t.allKeys()).map(asAsymmetric),
          versions: (await t.keyVersions('k-tenant')).map(asAsymmetric),
          one: await t.getKey('k-tenant', 2),
          missing: await t.getKey('k-tenant', 7),
          policy: await t.keyPolicy('k-tenant'),
          noPolicy: await t.keyPolicy('k-other'),
          periodic: await t.periodicKeys(),
        };
      });
      assert.deepEqual(pgKeys.all, AsymmetricKeyStore.all(sqlite));
      assert.deepEqual(pgKeys.versions, AsymmetricKeyStore.versions(sqlite, 'k-tenant'));
      assert.deepEqual(pgKeys.one && asAsymmetric(pgKeys.one), AsymmetricKeyStore.get(sqlite, 'k-tenant', 2));
      assert.equal(pgKeys.missing, undefined);
      assert.deepEqual(pgKeys.policy, AsymmetricKeyStore.policy(sqlite, 'k-tenant'));
      assert.equal(pgKeys.noPolicy, undefined, 'no policy row: the keys layer applies its default');
      assert.deepEqual(pgKeys.periodic, AsymmetricKeyStore.periodic(sqlite));
      assert.ok(pgKeys.all.length < KEYS.length, "the customer's key went with destroyCustomer");
    } finally {
      sqlite.close();
    }
  });

  test('purge deletes every tenant-level row of one tenant and none of another', async () => {
    await seedTenantRows(store, 'p-org', 'a');
    await seedTenantRows(store, 'p-org', 'b');
    await store.withTenant('p-org', 'a', (t) => t.purge());
    const count = (tn: string) =>
      store.withTenant('p-org', tn, async (t) => {
        const n: Record<string, unknown> = {};
        for (const table of TENANT_TABLES)
          n[table] = (await t.query(`SELECT COUNT(*)::int AS n FROM ${table}`))[0]?.n;
        return n;
      });
    assert.deepEqual(await count('a'), Object.fromEntries(TENANT_TABLES.map((x) => [x, 0])));
    assert.deepEqual(await count('b'), Object.fromEntries(TENANT_TABLES.map((x) => [x, 1])));
  });

  test("destroyCustomer also deletes the customer's secrets and blind-index pins, not another's", async () => {
    await seedTenantRows(store, 'd-org', 'a');
    const left = await store.withTenant('d-org', 'a', async (t) => {
      await t.insertCustomer(customerRow('keep'), cekRow('keep'));
      await t.query(
        `INSERT INTO secrets (org, tenant, customer, name, current_version, max_versions, created_at, updated_at)
           VALUES ('d-org', 'a', 'keep', 's', 1, 1, $1, $1)`,
        [AT],
      );
      await t.query(
        `INSERT INTO secret_versions (org, tenant, customer, name, version, cek_version, blob, state, created_at)
           VALUES ('d-org', 'a', 'keep', 's', 1, 1, NULL, 'destroyed', $1)`,
        [AT],
      );
      await t.query(
        `INSERT INTO blind_index_ceks (org, tenant, name, version, customer, cek_version)
           VALUES ('d-org', 'a', 'email', 1, 'keep', 1)`,
      );
      await t.destroyCustomer('c-a');
      const out: Record<string, unknown> = {};
      for (const table of ['secrets', 'secret_versions', 'blind_index_ceks'])
        out[table] = (await t.query(`SELECT customer FROM ${table} ORDER BY customer`)).map(
          (r) => r.customer,
        );
      // The index definitions are the tenant's, not the customer's: they stay.
      for (const table of ['blind_indexes', 'blind_index_versions'])
        out[table] = (await t.query(`SELECT COUNT(*)::int AS n FROM ${table}`))[0]?.n;
      return out;
    });
    assert.deepEqual(left, {
      secrets: ['keep'],
      secret_versions: ['keep'],
      blind_index_ceks: ['keep'],
      blind_indexes: 1,
      blind_index_versions: 1,
    });
  });
});

describe('transactions', () => {
  let store: PostgresStore;
  before(async () => {
    store = await PostgresStore.open({ url: await server.createDatabase('txs') });
    await seedTenant(store, 'o', 'a');
  });
  after(async () => {
    await store.close();
  });

  test('registry.tx: calls inside commit together or not at all', async () => {
    const boom = new Error('boom');
    await assert.rejects(
      store.registry.tx(async (r) => {
        await r.insertOrg(orgRow('tx-org'), oekRow('tx-org'));
        await r.insertTenant(tenantRow('tx-org', 't'), tekRow('tx-org', 't'));
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal(await store.registry.getOrg('tx-org'), undefined);
    assert.deepEqual(await store.registry.listOeks('tx-org'), []);
  });

  test("withTenant: the tenant's rows and registry rows written through it commit or roll back together", async () => {
    const boom = new Error('boom');
    await assert.rejects(
      store.withTenant('o', 'a', async (t) => {
        await t.registry.insertTek(tekRow('o', 'a', 2));
        await t.insertCustomer(customerRow('c'), cekRow('c'));
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal(await store.registry.getTek('o', 'a', 2), undefined);
    assert.equal(await store.withTenant('o', 'a', (t) => t.getCustomer('c')), undefined);
    await store.withTenant('o', 'a', async (t) => {
      await t.registry.insertTek(tekRow('o', 'a', 2));
      await t.insertCustomer(customerRow('c'), cekRow('c'));
    });
    assert.equal((await store.registry.getTek('o', 'a', 2))?.version, 2);
    assert.equal((await store.withTenant('o', 'a', (t) => t.getCustomer('c')))?.customer, 'c');
  });

  test('a customer row needs its tenant in the registry (foreign key)', async () => {
    await assert.rejects(
      store.withTenant('o', 'no-such-tenant', (t) => t.insertCustomer(customerRow('c'), cekRow('c'))),
      /foreign key constraint/,
    );
  });

  test('a BIGINT past 2^53 is refused, not rounded', async () => {
    await assert.rejects(store.pool.query('SELECT 9007199254740993::bigint AS n'), /exceeds 2\^53/);
    const r = await store.pool.query('SELECT 9007199254740991::bigint AS n');
    assert.equal(r.rows[0].n, Number.MAX_SAFE_INTEGER);
  });
});
