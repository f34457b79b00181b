// Online backup and restore on real SoftHSM2 + SQLite: a backup taken while the broker writes
// (SQLite's online backup API) is consistent (integrity_check, every checksum), holds no PIN and
// no key in the clear; restored with the same token it decrypts everything; after a shred, a
// restore of the older backup reports the shredded org's tenants as unrecoverable, marks them
// destroyed (not served) and serves every other org; a tampered or foreign backup is refused.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { restoreBackup } from '../../daemon/src/keys/restore-backup.ts';
import { backupDataDir, MANIFEST_FILE, verifyBackup } from '../../daemon/src/store/online-backup.ts';
import { bytes, codeOf, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
const A1 = ref('acme', 'a1');
const A2 = ref('acme', 'a2');
const G1 = ref('globex', 'g1');
const ctx = bytes('ctx');
const cts = new Map<string, Uint8Array>();
let backup1: string;

const hsmInfo = () => ({ profile: 'softhsm2', tokenLabel: env.token.label });
const files = (d: string): string[] =>
  readdirSync(d, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));

before(async () => {
  env = await openSoftHsm('kb-backup');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  await kb.createOrg(org('globex'));
  for (const r of [A1, A2, G1]) {
    await kb.createTenant(r.org, r.tenant);
    cts.set(
      r.tenant,
      (await kb.encrypt(r, { plaintext: bytes(`data of ${r.tenant}`), aad: ctx })).ciphertext,
    );
    await kb.secrets.put(r, { name: 'db/url', value: bytes(`secret of ${r.tenant}`) });
  }
});
after(async () => {
  await kb.close();
  await env.close();
});

describe('backup while serving', () => {
  test('snapshots every file with writes in flight: consistent, checksummed, no PIN', async () => {
    let writes = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        await kb.encrypt(A1, { plaintext: bytes(`w${i}`), aad: ctx });
        await kb.secrets.put(G1, { name: `busy/${i % 5}`, value: bytes(`v${i}`) });
        writes++;
        // As requests arrive from the network: the backup's steps get their turns too.
        await new Promise((r) => setImmediate(r));
      }
    })();
    backup1 = env.dataDir();
    const m = await backupDataDir({ dataDir: dir, outDir: backup1, hsm: hsmInfo() });
    stop = true;
    await loop;
    assert.ok(writes > 0, 'writes ran during the backup');
    assert.equal(m.files.length, 4, `files: ${m.files.map((f) => f.path).join(', ')}`);
    assert.equal(m.registrySchemaVersion, 4);
    assert.equal(m.tenantSchemaVersion, 5);
    assert.equal(m.hsm.tokenLabel, env.token.label);
    assert.deepEqual(
      m.hsm.oekLabels.map((k) => k.org),
      ['acme', 'globex'],
    );
    assert.equal(m.lastShredEpoch, null);
    for (const f of m.files) {
      const db = new Database(join(backup1, f.path), { readonly: true });
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok', `${f.path} integrity`);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'delete', `${f.path} stands alone`);
      db.close();
    }
    assert.deepEqual(verifyBackup(backup1).files, m.files);
    for (const f of files(backup1)) {
      const raw = readFileSync(f);
      assert.ok(!raw.includes(Buffer.from(env.token.pin)), `${f} holds the PIN`);
      assert.ok(!raw.includes(Buffer.from('secret of ')), `${f} holds a secret in the clear`);
      assert.equal(statSync(f).mode & 0o077, 0, `${f} is private`);
    }
  });

  test('refused: a non-empty target directory', async () => {
    await assert.rejects(backupDataDir({ dataDir: dir, outDir: backup1, hsm: hsmInfo() }), /not empty/);
  });
});

describe('restore', () => {
  test('into an empty data dir with the same token: every tenant decrypts', async () => {
    const target = env.dataDir();
    const r = await restoreBackup({
      backupDir: backup1,
      dataDir: target,
      hsm: env.hsm,
      tokenLabel: env.token.label,
    });
    assert.deepEqual(r.unrecoverable, []);
    assert.deepEqual(r.restored, ['acme/a1', 'acme/a2', 'globex/g1']);
    const old = await openBroker(env.hsm, target);
    try {
      for (const t of [A1, A2, G1]) {
        const pt = await old.decrypt(t, { ciphertext: cts.get(t.tenant) as Uint8Array, aad: ctx });
        assert.equal(text(pt.plaintext), `data of ${t.tenant}`);
        assert.equal(text((await old.secrets.get(t, { name: 'db/url' })).value), `secret of ${t.tenant}`);
      }
    } finally {
      await old.close();
    }
  });

  const refusals: [string, (b: string) => void, RegExp, string?][] = [
    [
      'a flipped byte in a tenant file',
      (b) => {
        const f = verifyBackup(b).files.find((x) => x.path !== 'registry.db')?.path as string;
        const buf = readFileSync(join(b, f));
        buf[200] = (buf[200] as number) ^ 1;
        writeFileSync(join(b, f), buf);
      },
      /does not match its checksum/,
    ],
    [
      'an edited manifest',
      (b) => writeFileSync(join(b, MANIFEST_FILE), '{"format":"other"}'),
      /unknown backup format/,
    ],
    ['another HSM token', () => undefined, /HSM token/, 'other-token'],
  ];
  for (const [name, spoil, want, label] of refusals)
    test(`refused: ${name}`, async () => {
      const copy = env.dataDir();
      for (const f of files(backup1)) {
        const rel = f.slice(backup1.length + 1);
        const to = join(copy, rel);
        (await import('node:fs')).mkdirSync(join(to, '..'), { recursive: true });
        writeFileSync(to, readFileSync(f));
      }
      spoil(copy);
      const target = env.dataDir();
      await assert.rejects(
        restoreBackup({
          backupDir: copy,
          dataDir: target,
          hsm: env.hsm,
          tokenLabel: label ?? env.token.label,
        }),
        want,
      );
      assert.deepEqual(readdirSync(target), [], 'nothing restored');
    });

  test('refused: a data dir that already holds a registry', async () => {
    await assert.rejects(restoreBackup({ backupDir: backup1, dataDir: dir, hsm: env.hsm }), /empty data dir/);
  });

  test('after a shred: the shredded org is reported unrecoverable and not served; other orgs decrypt', async () => {
    await kb.destroyTenant(A2);
    const target = env.dataDir();
    const r = await restoreBackup({ backupDir: backup1, dataDir: target, hsm: env.hsm });
    // The shred epoch destroyed acme's old OEK versions: every acme tenant of the backup is gone.
    assert.deepEqual(r.unrecoverable, ['acme/a1', 'acme/a2']);
    assert.deepEqual(r.restored, ['globex/g1']);
    assert.deepEqual(r.disabledOrgs, ['acme']);
    const old = await openBroker(env.hsm, target);
    try {
      for (const t of [A1, A2]) {
        assert.equal(
          await codeOf(() => old.decrypt(t, { ciphertext: cts.get(t.tenant) as Uint8Array, aad: ctx })),
          'NOT_FOUND',
          `${t.tenant} is not served`,
        );
        assert.equal(await codeOf(() => old.secrets.get(t, { name: 'db/url' })), 'NOT_FOUND');
      }
      const pt = await old.decrypt(G1, { ciphertext: cts.get('g1') as Uint8Array, aad: ctx });
      assert.equal(text(pt.plaintext), 'data of g1');
      assert.equal(text((await old.secrets.get(G1, { name: 'db/url' })).value), 'secret of g1');
    } finally {
      await old.close();
    }
    // A backup taken after the shred restores acme/a1 (and records the epoch).
    const backup2 = env.dataDir();
    const m2 = await backupDataDir({ dataDir: dir, outDir: backup2, hsm: hsmInfo() });
    assert.equal(m2.lastShredEpoch?.org, 'acme');
    assert.equal(m2.lastShredEpoch?.state, 'done');
    const target2 = env.dataDir();
    const r2 = await restoreBackup({ backupDir: backup2, dataDir: target2, hsm: env.hsm });
    assert.deepEqual(r2.unrecoverable, []);
    assert.deepEqual(r2.restored, ['acme/a1', 'globex/g1']);
    const now = await openBroker(env.hsm, target2);
    try {
      const pt = await now.decrypt(A1, { ciphertext: cts.get('a1') as Uint8Array, aad: ctx });
      assert.equal(text(pt.plaintext), 'data of a1');
    } finally {
      await now.close();
    }
  });
});
