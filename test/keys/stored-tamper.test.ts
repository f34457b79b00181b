// Tamper loop on the stored unwrap paths, on real SoftHSM2 + SQLite: every byte of a wrapped TEK
// (registry, unwrapped in the HSM) and of a wrapped CEK (tenant file, unwrapped in software)
// gets a bit flipped, rows are truncated and swapped between tenants; decrypt must fail with the
// one DECRYPTION_FAILED and never return plaintext. The cache TTL is 0 so every call unwraps.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { bytes, codeOf, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
const A = ref('acme', 'ta');
const B = ref('acme', 'tb');
const ctx = bytes('ctx');
let ct: Uint8Array;

before(async () => {
  env = await openSoftHsm('kb-stored');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir, { cache: { ttlMs: 0 } });
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
  ct = (await kb.encrypt(A, { plaintext: bytes('stored secret'), aad: ctx })).ciphertext;
});
after(async () => {
  await kb.close();
  await env.close();
});

/** Run `fn` with a row's blob replaced by `blob`, then restore the original. */
async function withRow(
  db: Database.Database,
  sql: { get: string; set: string },
  args: unknown[],
  mutate: (b: Buffer) => Buffer,
  fn: () => Promise<void>,
): Promise<void> {
  const orig = (db.prepare(sql.get).get(...args) as { wrapped: Buffer }).wrapped;
  db.prepare(sql.set).run(mutate(Buffer.from(orig)), ...args);
  try {
    await fn();
  } finally {
    db.prepare(sql.set).run(orig, ...args);
  }
}

const expectFailure = async (what: string): Promise<void> => {
  const got = await codeOf(() => kb.decrypt(A, { ciphertext: ct, aad: ctx }));
  assert.equal(got, 'DECRYPTION_FAILED', `${what}: decrypt gave ${got}`);
};

test('wrapped TEK rows: bit flips, truncations and a row swapped in from another tenant fail', async () => {
  const db = new Database(join(dir, 'registry.db'));
  db.pragma('synchronous = OFF'); // the attacker's writes need no durability; keeps the loop fast
  const sql = {
    get: "SELECT wrapped FROM tek_versions WHERE org = 'acme' AND tenant = ? AND version = 1",
    set: "UPDATE tek_versions SET wrapped = ? WHERE org = 'acme' AND tenant = ? AND version = 1",
  };
  try {
    const len = (db.prepare(sql.get).get('ta') as { wrapped: Buffer }).wrapped.length;
    for (let i = 0; i < len; i++) {
      await withRow(
        db,
        sql,
        ['ta'],
        (b) => ((b[i] = (b[i] as number) ^ (1 << (i % 8))), b),
        () => expectFailure(`TEK byte ${i} flipped`),
      );
    }
    for (const n of [0, 3, 10, len - 1])
      await withRow(
        db,
        sql,
        ['ta'],
        (b) => b.subarray(0, n),
        () => expectFailure(`TEK cut to ${n}`),
      );
    const other = (db.prepare(sql.get).get('tb') as { wrapped: Buffer }).wrapped;
    await withRow(
      db,
      sql,
      ['ta'],
      () => Buffer.from(other),
      () => expectFailure("B's wrapped TEK in A's row"),
    );
  } finally {
    db.close();
  }
  assert.equal(
    text((await kb.decrypt(A, { ciphertext: ct, aad: ctx })).plaintext),
    'stored secret',
    'restored row works again',
  );
});

test('wrapped CEK rows: every bit flipped, truncations and a row from another tenant fail', async () => {
  const file = (t: string): string => {
    const f = readdirSync(join(dir, 'tenants/acme')).find((x) => x.startsWith(`${t}.`) && x.endsWith('.db'));
    return join(dir, 'tenants/acme', f as string);
  };
  const db = new Database(file('ta'));
  const dbB = new Database(file('tb'));
  db.pragma('synchronous = OFF');
  const sql = {
    get: 'SELECT wrapped FROM cek_versions WHERE customer = ? AND version = 1',
    set: 'UPDATE cek_versions SET wrapped = ? WHERE customer = ? AND version = 1',
  };
  try {
    const len = (db.prepare(sql.get).get('default') as { wrapped: Buffer }).wrapped.length;
    for (let bit = 0; bit < len * 8; bit++) {
      await withRow(
        db,
        sql,
        ['default'],
        (b) => ((b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7))), b),
        () => expectFailure(`CEK bit ${bit} flipped`),
      );
    }
    for (let n = 0; n < len; n++)
      await withRow(
        db,
        sql,
        ['default'],
        (b) => b.subarray(0, n),
        () => expectFailure(`CEK cut to ${n}`),
      );
    const other = (dbB.prepare(sql.get).get('default') as { wrapped: Buffer }).wrapped;
    await withRow(
      db,
      sql,
      ['default'],
      () => Buffer.from(other),
      () => expectFailure("B's wrapped CEK in A's row"),
    );
  } finally {
    db.close();
    dbB.close();
  }
  assert.equal(text((await kb.decrypt(A, { ciphertext: ct, aad: ctx })).plaintext), 'stored secret');
});
