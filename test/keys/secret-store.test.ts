// The secrets store on real SoftHSM2 + SQLite: versions, check-and-set, soft delete and undo,
// hard destroy, the bound on versions kept; values sealed under a CEK-derived key (a stored
// secret is no Crypto ciphertext); a tamper loop over the stored row (every byte's bit flipped,
// truncations, rows swapped between names, versions, customers and tenants) gives only the one
// DECRYPTION_FAILED; a customer or tenant shred makes secrets unreadable, also from copies.
import assert from 'node:assert/strict';
import { cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
const A = ref('acme', 'ta');
const B = ref('acme', 'tb');

before(async () => {
  env = await openSoftHsm('kb-secrets');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir, { cache: { ttlMs: 0 } });
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
  await kb.createCustomer(A, cust('c1'));
});
after(async () => {
  await kb.close();
  await env.close();
});

const get = async (r = A, name = 'db/password', version?: number, customer?: string) =>
  text(
    (
      await kb.secrets.get(r, {
        name,
        ...(version !== undefined ? { version } : {}),
        ...(customer !== undefined ? { customer: cust(customer) } : {}),
      })
    ).value,
  );

describe('versions', () => {
  test('put, get latest and by version, check-and-set', async () => {
    assert.equal((await kb.secrets.put(A, { name: 'db/password', value: bytes('one'), cas: 0 })).version, 1);
    assert.equal((await kb.secrets.put(A, { name: 'db/password', value: bytes('two') })).version, 2);
    assert.equal(await get(), 'two');
    assert.equal(await get(A, 'db/password', 1), 'one');
    assert.equal(
      await codeOf(() => kb.secrets.put(A, { name: 'db/password', value: bytes('x'), cas: 1 })),
      'FAILED_PRECONDITION',
      'stale check-and-set',
    );
    assert.equal(
      await codeOf(() => kb.secrets.put(A, { name: 'db/password', value: bytes('x'), cas: 0 })),
      'FAILED_PRECONDITION',
      'create-only on an existing secret',
    );
    assert.equal(
      (await kb.secrets.put(A, { name: 'db/password', value: bytes('three'), cas: 2 })).version,
      3,
    );
  });

  test('same name per customer and per tenant are different secrets', async () => {
    await kb.secrets.put(A, { name: 'api-key', value: bytes('default A') });
    await kb.secrets.put(A, { name: 'api-key', value: bytes('c1 A'), customer: cust('c1') });
    await kb.secrets.put(B, { name: 'api-key', value: bytes('default B') });
    assert.equal(await get(A, 'api-key'), 'default A');
    assert.equal(await get(A, 'api-key', undefined, 'c1'), 'c1 A');
    assert.equal(await get(B, 'api-key'), 'default B');
    assert.equal(await codeOf(() => kb.secrets.get(B, { name: 'db/password' })), 'NOT_FOUND');
  });

  test('soft delete hides a version until undone; destroy is final; list carries no values', async () => {
    await kb.secrets.setDeleted(A, { name: 'db/password' }, [], true);
    assert.equal(await codeOf(() => kb.secrets.get(A, { name: 'db/password' })), 'NOT_FOUND');
    assert.equal(await get(A, 'db/password', 2), 'two', 'other versions stay readable');
    await kb.secrets.setDeleted(A, { name: 'db/password' }, [3], false);
    assert.equal(await get(), 'three');
    const info = await kb.secrets.destroyVersions(A, { name: 'db/password' }, [1]);
    assert.deepEqual(
      info.versions.map((v) => [v.version, v.state]),
      [
        [1, 'destroyed'],
        [2, 'active'],
        [3, 'active'],
      ],
    );
    assert.equal(await codeOf(() => kb.secrets.get(A, { name: 'db/password', version: 1 })), 'NOT_FOUND');
    await kb.secrets.setDeleted(A, { name: 'db/password' }, [1], false);
    assert.equal(
      await codeOf(() => kb.secrets.get(A, { name: 'db/password', version: 1 })),
      'NOT_FOUND',
      'undelete does not bring back a destroyed version',
    );
    const listed = await kb.secrets.list(A);
    assert.deepEqual(
      listed.map((s) => s.name),
      ['api-key', 'db/password'],
    );
    assert.ok(!JSON.stringify(listed).includes('three'), 'list leaks a value');
  });

  test('the bound on versions: the oldest are dropped', async () => {
    await kb.secrets.put(A, { name: 'rolling', value: bytes('v1'), maxVersions: 2 });
    await kb.secrets.put(A, { name: 'rolling', value: bytes('v2') });
    await kb.secrets.put(A, { name: 'rolling', value: bytes('v3') });
    const info = (await kb.secrets.list(A)).find((s) => s.name === 'rolling');
    assert.deepEqual(
      info?.versions.map((v) => v.version),
      [2, 3],
    );
    assert.equal(await codeOf(() => kb.secrets.get(A, { name: 'rolling', version: 1 })), 'NOT_FOUND');
  });

  const bad: [string, () => Promise<unknown>, string][] = [
    ['empty name', () => kb.secrets.put(A, { name: '', value: bytes('x') }), 'INVALID_ARGUMENT'],
    ['name with space', () => kb.secrets.put(A, { name: 'a b', value: bytes('x') }), 'INVALID_ARGUMENT'],
    [
      'name of 256 chars',
      () => kb.secrets.put(A, { name: 'a'.repeat(256), value: bytes('x') }),
      'INVALID_ARGUMENT',
    ],
    ['empty value', () => kb.secrets.put(A, { name: 'x', value: new Uint8Array(0) }), 'INVALID_ARGUMENT'],
    ['value over 64 KiB', () => kb.secrets.put(A, { name: 'x', value: new Uint8Array(65537) }), 'TOO_LARGE'],
    [
      'max versions 0',
      () => kb.secrets.put(A, { name: 'x', value: bytes('x'), maxVersions: 0 }),
      'INVALID_ARGUMENT',
    ],
    [
      'max versions 101',
      () => kb.secrets.put(A, { name: 'x', value: bytes('x'), maxVersions: 101 }),
      'INVALID_ARGUMENT',
    ],
    [
      'unknown customer',
      () => kb.secrets.put(A, { name: 'x', value: bytes('x'), customer: cust('zz') }),
      'NOT_FOUND',
    ],
    ['get unknown', () => kb.secrets.get(A, { name: 'nope' }), 'NOT_FOUND'],
    ['get unknown version', () => kb.secrets.get(A, { name: 'api-key', version: 9 }), 'NOT_FOUND'],
    ['delete unknown version', () => kb.secrets.setDeleted(A, { name: 'api-key' }, [9], true), 'NOT_FOUND'],
    ['destroy no versions', () => kb.secrets.destroyVersions(A, { name: 'api-key' }, []), 'INVALID_ARGUMENT'],
    ['destroy version 0', () => kb.secrets.destroyVersions(A, { name: 'api-key' }, [0]), 'INVALID_ARGUMENT'],
  ];
  for (const [name, fn, code] of bad)
    test(`refused: ${name} -> ${code}`, async () => {
      assert.equal(await codeOf(fn), code);
    });
});

test('key separation: a stored secret is not a Crypto ciphertext (Decrypt refuses it)', async () => {
  await kb.secrets.put(A, { name: 'sep', value: bytes('separate') });
  const blob = rowBlob(A, 'default', 'sep', 1);
  assert.equal(
    await codeOf(() => kb.decrypt(A, { ciphertext: blob, aad: new Uint8Array(0) })),
    'DECRYPTION_FAILED',
  );
});

describe('tamper loop over the stored row', () => {
  test('bit flips in every byte, truncations, and rows swapped in: only DECRYPTION_FAILED, never a value', async () => {
    await kb.secrets.put(A, { name: 'victim', value: bytes('victim value') });
    await kb.secrets.put(A, { name: 'victim', value: bytes('victim value 2') });
    await kb.secrets.put(A, { name: 'other', value: bytes('other value') });
    await kb.secrets.put(A, { name: 'victim', value: bytes('c1 value'), customer: cust('c1') });
    await kb.secrets.put(B, { name: 'victim', value: bytes('B value') });
    const orig = rowBlob(A, 'default', 'victim', 1);
    const db = openTenantDb(A);
    db.pragma('synchronous = OFF');
    const set = db.prepare(
      "UPDATE secret_versions SET blob = ? WHERE customer = 'default' AND name = 'victim' AND version = 1",
    );
    const expectFail = async (what: string) => {
      const got = await codeOf(() => kb.secrets.get(A, { name: 'victim', version: 1 }));
      assert.equal(got, 'DECRYPTION_FAILED', `${what}: got ${got}`);
    };
    try {
      for (let i = 0; i < orig.length; i++) {
        const b = Buffer.from(orig);
        b[i] = (b[i] as number) ^ (1 << (i % 8));
        set.run(b);
        await expectFail(`bit flip at byte ${i}`);
      }
      for (const n of [0, 1, 10, orig.length - 17, orig.length - 1]) {
        set.run(Buffer.from(orig.subarray(0, n)));
        await expectFail(`truncated to ${n}`);
      }
      const swaps: [string, Uint8Array][] = [
        ['version 2 of the same secret', rowBlob(A, 'default', 'victim', 2)],
        ['another name', rowBlob(A, 'default', 'other', 1)],
        ['another customer', rowBlob(A, 'c1', 'victim', 1)],
        ['another tenant', rowBlob(B, 'default', 'victim', 1)],
      ];
      for (const [what, blob] of swaps) {
        set.run(Buffer.from(blob));
        await expectFail(`row swapped in from ${what}`);
      }
    } finally {
      set.run(Buffer.from(orig));
      db.close();
    }
    assert.equal(await get(A, 'victim', 1), 'victim value', 'the restored row opens again');
  });
});

describe('shred', () => {
  test('customer shred: secrets unreadable, also from a restored copy; siblings readable', async () => {
    await kb.createCustomer(A, cust('gone'));
    await kb.secrets.put(A, { name: 'k', value: bytes('gone value'), customer: cust('gone') });
    await kb.secrets.put(A, { name: 'k', value: bytes('sibling value') });
    const snap = env.dataDir();
    cpSync(dir, snap, { recursive: true });
    await kb.destroyCustomer(A, cust('gone'));
    assert.equal(await codeOf(() => kb.secrets.get(A, { name: 'k', customer: cust('gone') })), 'NOT_FOUND');
    assert.equal(await get(A, 'k'), 'sibling value');
    const restored = env.dataDir();
    cpSync(snap, restored, { recursive: true });
    const old = await openBroker(env.hsm, restored);
    try {
      const got = await codeOf(() => old.secrets.get(A, { name: 'k', customer: cust('gone') }));
      assert.equal(got, 'DECRYPTION_FAILED', 'the restored copy opened a secret of the shredded customer');
    } finally {
      await old.close();
    }
  });

  test('tenant shred: secrets unreadable, also from a restored copy', async () => {
    const T = ref('acme', 'tshred');
    await kb.createTenant(T.org, T.tenant);
    await kb.secrets.put(T, { name: 'k', value: bytes('tenant value') });
    const snap = env.dataDir();
    cpSync(dir, snap, { recursive: true });
    await kb.destroyTenant(T);
    assert.equal(await codeOf(() => kb.secrets.get(T, { name: 'k' })), 'NOT_FOUND');
    const restored = env.dataDir();
    cpSync(snap, restored, { recursive: true });
    const old = await openBroker(env.hsm, restored);
    try {
      const got = await codeOf(() => old.secrets.get(T, { name: 'k' }));
      assert.notEqual(got, 'no error', 'the restored copy opened a secret of the shredded tenant');
      assert.ok(['DECRYPTION_FAILED', 'HSM_UNAVAILABLE'].includes(got), `restored tenant: ${got}`);
    } finally {
      await old.close();
    }
  });
});

function openTenantDb(r: typeof A): Database.Database {
  const tdir = join(dir, 'tenants', r.org);
  const f = readdirSync(tdir).find((x) => x.startsWith(`${r.tenant}.`) && x.endsWith('.db'));
  assert.ok(f, `tenant file of ${r.tenant}`);
  return new Database(join(tdir, f));
}

function rowBlob(r: typeof A, customer: string, name: string, version: number): Uint8Array {
  const db = openTenantDb(r);
  try {
    const row = db
      .prepare('SELECT blob FROM secret_versions WHERE customer = ? AND name = ? AND version = ?')
      .get(customer, name, version) as { blob: Buffer } | undefined;
    assert.ok(row, `row ${r.tenant}/${customer}/${name}/${version}`);
    return new Uint8Array(row.blob);
  } finally {
    db.close();
  }
}
