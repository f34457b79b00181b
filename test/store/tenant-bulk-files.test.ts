// Bulk tenant creation at the store level, on real SQLite files: tenant-file images read back
// through TenantStore like any other tenant file (same schema, WAL), createFilesDurably never
// overwrites and cleans up after a failure, and RegistryStore.insertTenants commits a batch in
// one transaction, skipping names that exist and refusing a stale OEK as a whole.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { RegistryStore, StaleOekError } from '../../daemon/src/store/registry-store.ts';
import type { TekRow, TenantRow } from '../../daemon/src/store/registry-store.ts';
import { TenantFileImages, tenantFileImage } from '../../daemon/src/store/tenant-file-image.ts';
import { TenantStore } from '../../daemon/src/store/tenant-store.ts';
import type { CekRow, CustomerRow } from '../../daemon/src/store/tenant-store.ts';
import { TenantStorePool } from '../../daemon/src/store/tenant-store-pool.ts';

const root = mkdtempSync(join(tmpdir(), 'kb-bulk-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

const NOW = '2026-11-22T08:00:00.000Z';
const customer: CustomerRow = {
  customer: 'default',
  enabled: true,
  state: 'active',
  createdAt: NOW,
  primaryCek: 1,
  rotationPeriodS: 3600,
  usageLimit: 0,
  minEnc: 1,
  minDec: 1,
};
const cek = (i: number): CekRow => ({
  customer: 'default',
  version: 1,
  tekVersion: 1,
  wrapped: new Uint8Array(60).fill(i & 0xff),
  state: 'enabled',
  createdAt: NOW,
  uses: 0,
});
const schemaOf = (s: TenantStore): string[] =>
  (
    s.db.prepare('SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name').all() as {
      sql: string;
    }[]
  ).map((r) => r.sql);

test('an image opens as a tenant file: same schema and version as a created file, WAL, its rows', () => {
  const pool = new TenantStorePool(root, 4);
  const made = TenantStore.open(join(root, 'made.db'), true);
  const wantSchema = schemaOf(made);
  const wantVersion = made.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get();
  made.close();
  writeFileSync(join(root, 'img.db'), tenantFileImage(customer, cek(7)));
  const s = pool.get('img.db');
  assert.deepEqual(schemaOf(s), wantSchema, 'image schema vs TenantStore.open(create) schema');
  assert.deepEqual(s.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get(), wantVersion);
  assert.equal(s.db.pragma('journal_mode', { simple: true }), 'wal', 'image journal mode');
  assert.deepEqual(s.getCustomer('default'), customer, 'customer row read back');
  assert.deepEqual(s.getCek('default', 1), cek(7), 'CEK row read back');
  // Writable like any tenant file (a second customer, then reopened).
  s.insertCustomer({ ...customer, customer: 'bob' }, { ...cek(8), customer: 'bob' });
  pool.closeAll();
  assert.equal(pool.get('img.db').listCustomers().length, 2, 'rows after reopening');
  pool.closeAll();
});

test('images of different tenants share no bytes of each other (no leftovers from a template)', () => {
  const a = tenantFileImage(customer, cek(0xaa));
  const b = tenantFileImage(customer, cek(0xbb));
  const marker = Buffer.alloc(60, 0xaa);
  assert.ok(Buffer.from(a).includes(marker), 'tenant A image holds its wrapped CEK');
  assert.ok(!Buffer.from(b).includes(marker), "tenant B image must not hold tenant A's wrapped CEK");
});

test('TenantFileImages: each copy opens with its own wrapped CEK; another length gets a built image', () => {
  const { wrapped: _w, ...rest } = cek(0);
  const images = new TenantFileImages(customer, rest);
  const pool = new TenantStorePool(root, 4);
  const cases = [
    { name: 'first (builds the template)', wrapped: new Uint8Array(60).fill(0x11) },
    { name: 'second (patched copy)', wrapped: new Uint8Array(60).fill(0x22) },
    { name: 'random bytes', wrapped: new Uint8Array(Buffer.from('x'.repeat(60))) },
    { name: 'another length', wrapped: new Uint8Array(72).fill(0x33) },
  ];
  for (const [i, c] of cases.entries()) {
    const file = `patched-${i}.db`;
    writeFileSync(join(root, file), images.image(c.wrapped));
    const s = pool.get(file);
    assert.deepEqual(s.getCek('default', 1)?.wrapped, c.wrapped, `${c.name}: wrapped CEK read back`);
    assert.deepEqual(s.getCustomer('default'), customer, `${c.name}: customer row`);
    assert.equal(s.db.pragma('integrity_check', { simple: true }), 'ok', `${c.name}: integrity_check`);
  }
  pool.closeAll();
});

test('createFilesDurably: writes 0600 files in new directories, never overwrites, cleans up on failure', async () => {
  const pool = new TenantStorePool(join(root, 'data'), 4);
  const files = Array.from({ length: 40 }, (_, i) => ({
    fileName: `tenants/acme/t${i}.db`,
    image: tenantFileImage(customer, cek(i)),
  }));
  await pool.createFilesDurably(files);
  for (const f of files) {
    const st = statSync(pool.pathOf(f.fileName));
    assert.equal(st.mode & 0o777, 0o600, `${f.fileName} mode`);
    assert.ok(readFileSync(pool.pathOf(f.fileName)).equals(f.image), `${f.fileName} bytes`);
  }
  // A batch naming one existing file fails as a whole; the existing file keeps its bytes.
  const clash = [
    { fileName: 'tenants/acme/new-a.db', image: tenantFileImage(customer, cek(1)) },
    { fileName: 'tenants/acme/t3.db', image: tenantFileImage(customer, cek(99)) },
    { fileName: 'tenants/acme/new-b.db', image: tenantFileImage(customer, cek(2)) },
  ];
  await assert.rejects(pool.createFilesDurably(clash), /EEXIST/, 'createFilesDurably over an existing file');
  assert.ok(
    readFileSync(pool.pathOf('tenants/acme/t3.db')).equals(files[3]?.image ?? new Uint8Array()),
    't3 untouched',
  );
  for (const n of ['new-a.db', 'new-b.db'])
    assert.ok(!existsSync(pool.pathOf(`tenants/acme/${n}`)), `${n} removed after the failed batch`);
  assert.equal(readdirSync(join(root, 'data/tenants/acme')).length, 40, 'only the first batch remains');
});

const tenantRow = (tenant: string): TenantRow => ({
  org: 'acme',
  tenant,
  enabled: true,
  state: 'active',
  createdAt: NOW,
  primaryTek: 1,
  fileName: `tenants/acme/${tenant}.db`,
  rotationPeriodS: 3600,
  usageLimit: 0,
  minEnc: 1,
  minDec: 1,
});
const tekRow = (tenant: string, oekVersion = 1): TekRow => ({
  org: 'acme',
  tenant,
  version: 1,
  oekVersion,
  wrapped: new Uint8Array(40),
  state: 'enabled',
  createdAt: NOW,
  uses: 1,
});

test('insertTenants: one transaction, existing names skipped and returned, a stale OEK refuses all', () => {
  const r = RegistryStore.open(join(root, 'registry.db'));
  r.insertOrg(
    {
      org: 'acme',
      enabled: true,
      createdAt: NOW,
      primaryOek: 1,
      rotationPeriodS: 0,
      usageLimit: 0,
      minEnc: 1,
      minDec: 1,
    },
    { org: 'acme', version: 1, hsmLabel: 'oek-1', state: 'enabled', createdAt: NOW, destroyedAt: null },
  );
  r.insertTenant(tenantRow('old'), tekRow('old'));
  const batch = ['a', 'old', 'b'].map((t) => ({ tenant: tenantRow(t), tek: tekRow(t) }));
  const skipped = r.insertTenants(batch);
  assert.deepEqual([...skipped], ['old'], 'skipped names');
  assert.deepEqual(
    r.listTenants('acme').map((t) => t.tenant),
    ['a', 'b', 'old'],
    'tenants after the batch',
  );
  assert.equal(r.listTeks('acme', 'a').length, 1, 'TEK row of a');
  // One row wrapped under an OEK that is not primary: nothing of the batch is committed.
  const stale = [
    { tenant: tenantRow('c'), tek: tekRow('c') },
    { tenant: tenantRow('d'), tek: tekRow('d', 2) },
  ];
  assert.throws(() => r.insertTenants(stale), StaleOekError, 'insertTenants with a stale OEK version');
  assert.equal(r.getTenant('acme', 'c'), undefined, 'c rolled back with the stale batch');
  r.close();
});
