// Tenant files that no registry row names (a crash between a tenant's file and its registry
// commit) are found; the files of live and destroyed tenants, and other files, are not.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { TenantId } from '../../daemon/src/ids.ts';
import { openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;

before(async () => {
  env = await openSoftHsm('kb-stray');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir);
});
after(async () => {
  await kb.close();
  await env.close();
});

test('no stray file before any tenant, nor after creating, bulk-creating and destroying tenants', async () => {
  assert.deepEqual(kb.strayTenantFiles(), []);
  await kb.createOrg(org('acme'));
  await kb.createTenant(org('acme'), 'one' as TenantId);
  await kb.createTenants?.(org('acme'), ['two', 'three'] as TenantId[]);
  await kb.destroyTenant(ref('acme', 'three'));
  assert.deepEqual(kb.strayTenantFiles(), []);
});

test('a .db file under tenants/ that no tenant names is stray; its -wal, other files and other dirs are not', async () => {
  writeFileSync(join(dir, 'tenants/acme/ghost.00c0ffee.db'), 'x');
  writeFileSync(join(dir, 'tenants/acme/ghost.00c0ffee.db-wal'), 'x');
  writeFileSync(join(dir, 'tenants/acme/notes.txt'), 'x');
  mkdirSync(join(dir, 'tenants/globex'), { recursive: true });
  writeFileSync(join(dir, 'tenants/globex/lost.0000beef.db'), 'x');
  writeFileSync(join(dir, 'tenants/README'), 'a file, not an org directory');
  assert.deepEqual(kb.strayTenantFiles(), [
    'tenants/acme/ghost.00c0ffee.db',
    'tenants/globex/lost.0000beef.db',
  ]);
  // The live tenants still work: the check only reads.
  await kb.createTenant(org('acme'), 'four' as TenantId);
  assert.equal(kb.strayTenantFiles().length, 2);
});
