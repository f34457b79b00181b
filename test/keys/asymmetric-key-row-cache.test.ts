// The key-row cache on a real tenant file: a hit reads nothing, every writer is seen at once,
// transactions bypass it, and a reopened file starts cold.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AsymmetricKeyRowCache } from '../../daemon/src/keys/asymmetric-key-row-cache.ts';
import { AsymmetricKeyStore, type AsymmetricKeyRow } from '../../daemon/src/keys/asymmetric-key-store.ts';
import { TenantStore } from '../../daemon/src/store/tenant-store.ts';

let dir: string;
let s: TenantStore;
let statements = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kb-rowcache-'));
  s = TenantStore.open(join(dir, 't.db'), true);
  const st = s.st.bind(s);
  s.st = (sql: string) => {
    if (sql.startsWith('SELECT')) statements++;
    return st(sql);
  };
});
after(() => {
  s.close();
  rmSync(dir, { recursive: true, force: true });
});

const row = (keyId: string, version: number, customer = ''): AsymmetricKeyRow => ({
  keyId,
  version,
  type: 'ml-dsa-65',
  customer,
  tekVersion: customer === '' ? 1 : 0,
  cekVersion: customer === '' ? 0 : 1,
  uses: 0,
  wrapped: new Uint8Array([version, 1, 2, 3]),
  publicKey: new Uint8Array([version, 9]),
  state: 'enabled',
  createdAt: '2026-11-22T00:00:00.000Z',
  meta: {},
});

/** The cache's view, and how many SELECTs it took. */
function read(c: AsymmetricKeyRowCache, keyId: string) {
  const before = statements;
  const r = c.get(s, keyId);
  return { ...r, selects: statements - before };
}

test('a second read of an unchanged key runs no statement; a missing key is cached as missing', () => {
  const c = new AsymmetricKeyRowCache();
  AsymmetricKeyStore.insert(s, row('k1', 1));
  const first = read(c, 'k1');
  assert.equal(first.selects, 2, 'versions + policy');
  assert.deepEqual(
    first.rows.map((r) => r.version),
    [1],
  );
  const again = read(c, 'k1');
  assert.equal(again.selects, 0);
  assert.equal(again.rows, first.rows, 'the same rows');
  assert.equal(read(c, 'nope').rows.length, 0);
  assert.equal(read(c, 'nope').selects, 0);
  AsymmetricKeyStore.insert(s, row('nope', 1));
  assert.equal(read(c, 'nope').rows.length, 1, 'a key created after a miss is found');
});

test('every writer of tenant_keys / tenant_key_policies is seen by the next read', () => {
  const c = new AsymmetricKeyRowCache();
  AsymmetricKeyStore.insert(s, row('k2', 1));
  AsymmetricKeyStore.insert(s, row('k2c', 1, 'c1'));
  read(c, 'k2');
  read(c, 'k2c');
  const steps: [string, () => void, (r: ReturnType<typeof read>) => void][] = [
    [
      'a new version',
      () => AsymmetricKeyStore.insert(s, row('k2', 2)),
      (r) => assert.equal(r.rows.length, 2),
    ],
    [
      'a version disabled (its wrap sealed again)',
      () =>
        assert.ok(
          AsymmetricKeyStore.replaceWrapped(s, row('k2', 1), new Uint8Array([7, 7]), 'disabled'),
          'compare-and-set on the row as read',
        ),
      (r) => assert.deepEqual([r.rows[0]?.state, [...(r.rows[0]?.wrapped ?? [])]], ['disabled', [7, 7]]),
    ],
    [
      'a policy set',
      () =>
        AsymmetricKeyStore.setPolicy(s, 'k2', { rotationPeriodS: 60, usageLimit: 5, minEnc: 2, minDec: 1 }),
      (r) => assert.deepEqual(r.policy, { rotationPeriodS: 60, usageLimit: 5, minEnc: 2, minDec: 1 }),
    ],
    [
      'usage counts flushed',
      () => AsymmetricKeyStore.addUses(s, [{ keyId: 'k2', version: 2, n: 7 }]),
      (r) => assert.equal(r.rows[1]?.uses, 7),
    ],
    [
      'a TEK rotation rewrapping the rows',
      () => s.rewrapAll([], [{ keyId: 'k2', version: 2, tekVersion: 2, wrapped: new Uint8Array([42]) }]),
      (r) => assert.deepEqual([r.rows[1]?.tekVersion, [...(r.rows[1]?.wrapped ?? [])]], [2, [42]]),
    ],
  ];
  for (const [what, write, check] of steps) {
    write();
    const r = read(c, 'k2');
    assert.ok(r.selects > 0, `${what}: read again`);
    check(r);
    assert.equal(read(c, 'k2').selects, 0, `${what}: then cached`);
  }
  assert.equal(read(c, 'k2c').rows.length, 1);
  s.destroyCustomer('c1');
  assert.equal(read(c, 'k2c').rows.length, 0, 'a customer shred deletes its keys from view');
});

test('inside a transaction the cache is bypassed; a rolled-back write is never served', () => {
  const c = new AsymmetricKeyRowCache();
  AsymmetricKeyStore.insert(s, row('k3', 1));
  read(c, 'k3');
  assert.throws(() =>
    s.tx(() => {
      AsymmetricKeyStore.insert(s, row('k3', 2));
      const inside = read(c, 'k3');
      assert.equal(inside.rows.length, 2, 'the transaction sees its own write');
      assert.ok(inside.selects > 0);
      throw new Error('roll back');
    }),
  );
  assert.deepEqual(
    read(c, 'k3').rows.map((r) => r.version),
    [1],
    'after the rollback: version 1 only',
  );
});

test('a reopened tenant file starts cold; the cache is bounded', () => {
  const c = new AsymmetricKeyRowCache(2);
  AsymmetricKeyStore.insert(s, row('k4', 1));
  read(c, 'k4');
  const other = TenantStore.open(s.path, false);
  try {
    AsymmetricKeyStore.insert(other, row('k4', 2));
    assert.equal(c.get(other, 'k4').rows.length, 2, 'another store object for the path: read afresh');
  } finally {
    other.close();
  }
  read(c, 'k1');
  read(c, 'k2');
  read(c, 'k3');
  assert.equal(c.size, 2);
});

test('tenant_keys and tenant_key_policies are written only where the writes report to the cache', () => {
  // A new writer elsewhere must call TenantStore.keysChanged() (and be added here once it does).
  const root = join(import.meta.dirname, '../../daemon/src');
  const writers = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .filter((f) =>
      /(INSERT INTO|UPDATE|DELETE FROM)\s+tenant_key(s|_policies)\b/.test(
        readFileSync(join(root, f), 'utf8'),
      ),
    )
    .sort();
  // store/postgres/ is the PostgreSQL backend (not served yet): its caches are to be kept coherent
  // by NOTIFY, not by this per-file counter.
  assert.deepEqual(writers, [
    'keys/asymmetric-key-store.ts',
    'store/postgres/pg-tenant-store.ts',
    'store/tenant-store.ts',
  ]);
});
