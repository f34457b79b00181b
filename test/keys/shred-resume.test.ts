// Crash-safety of shreds (fake HSM with injected failures, logic above the Hsm interface): a
// shred interrupted at any step resumes at the next open, and the old OEK is never destroyed
// before every surviving TEK is durably rewrapped under the new one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { KeyBroker, verifyShredReceipt } from '../../daemon/src/keys/key-broker.ts';
import { FakeHsm } from '../support/fake-hsm.ts';
import { bytes, codeOf, cust, org, ref, text } from './harness.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const ctx = bytes('c');
const A = ref('acme', 'a');
const B = ref('acme', 'b');

function registry(dir: string): {
  epochs: { state: string }[];
  shreds: { state: string; receipt: string | null }[];
  teksA: number;
} {
  const db = new Database(join(dir, 'registry.db'), { readonly: true });
  const epochs = db.prepare('SELECT state FROM shred_epochs ORDER BY id').all() as { state: string }[];
  const shreds = db.prepare('SELECT state, receipt FROM shred_log ORDER BY id').all() as {
    state: string;
    receipt: string | null;
  }[];
  const teksA = (
    db.prepare("SELECT COUNT(*) AS n FROM tek_versions WHERE tenant = 'a'").get() as { n: number }
  ).n;
  db.close();
  return { epochs, shreds, teksA };
}

async function setup(): Promise<{
  hsm: FakeHsm;
  dir: string;
  kb: KeyBroker;
  bCt: Uint8Array;
  c2Ct: Uint8Array;
}> {
  const hsm = new FakeHsm();
  const dir = mkdtempSync(join(tmpdir(), 'kb-resume-'));
  dirs.push(dir);
  const kb = await KeyBroker.open({ hsm, dataDir: dir, shredBatchMs: 0 });
  await kb.createOrg(org('acme'));
  for (const t of [A, B]) await kb.createTenant(t.org, t.tenant);
  await kb.createCustomer(B, cust('c1'));
  await kb.createCustomer(B, cust('c2'));
  const bCt = (await kb.encrypt(B, { plaintext: bytes('b data'), aad: ctx })).ciphertext;
  const c2Ct = (await kb.encrypt(B, { customer: cust('c2'), plaintext: bytes('c2 data'), aad: ctx }))
    .ciphertext;
  return { hsm, dir, kb, bCt, c2Ct };
}

// Each case injects one failure (a crash stand-in) into one HSM step of the shred.
const cases: {
  name: string;
  crash: { method: string; after: number };
  destroy: (kb: KeyBroker) => Promise<unknown>;
  oldOekKept: boolean;
}[] = [
  {
    name: 'tenant shred, crash while generating the new OEK',
    crash: { method: 'generateRootKey', after: 0 },
    destroy: (kb) => kb.destroyTenant(A),
    oldOekKept: true,
  },
  {
    name: 'tenant shred, crash while rewrapping TEKs',
    crash: { method: 'wrapKey', after: 0 },
    destroy: (kb) => kb.destroyTenant(A),
    oldOekKept: true,
  },
  {
    name: 'tenant shred, crash while destroying the old OEK',
    crash: { method: 'destroyKey', after: 0 },
    destroy: (kb) => kb.destroyTenant(A),
    oldOekKept: true,
  },
  {
    name: 'customer shred, crash while rotating the TEK',
    crash: { method: 'wrapKey', after: 0 },
    destroy: (kb) => kb.destroyCustomer(B, cust('c1')),
    oldOekKept: true,
  },
  {
    name: 'customer shred, crash while signing the receipt',
    crash: { method: 'sign', after: 0 },
    destroy: (kb) => kb.destroyCustomer(B, cust('c1')),
    oldOekKept: false,
  },
];

for (const c of cases) {
  test(`${c.name}: resumes at the next open`, async () => {
    const { hsm, dir, kb, bCt, c2Ct } = await setup();
    const rootsBefore = hsm.rootKeyCount;
    hsm.crash = { ...c.crash };
    assert.notEqual(await codeOf(() => c.destroy(kb)), 'no error', 'the injected crash must surface');
    hsm.crash = undefined;
    if (c.oldOekKept)
      assert.ok(hsm.rootKeyCount >= rootsBefore, 'an old OEK was destroyed before the epoch finished');
    // Survivors still decrypt in the interrupted state (nothing destroyed too early).
    assert.equal(text((await kb.decrypt(B, { ciphertext: bCt, aad: ctx })).plaintext), 'b data');
    await kb.close();

    const kb2 = await KeyBroker.open({ hsm, dataDir: dir, shredBatchMs: 0 });
    const r = registry(dir);
    assert.ok(
      r.epochs.length >= 1 && r.epochs.every((e) => e.state === 'done'),
      `epochs after resume: ${JSON.stringify(r.epochs)}`,
    );
    assert.ok(
      r.shreds.length === 1 && r.shreds[0]?.state === 'done',
      `shred log after resume: ${JSON.stringify(r.shreds)}`,
    );
    const receipt = JSON.parse(r.shreds[0]?.receipt as string) as Parameters<typeof verifyShredReceipt>[0];
    const pinned = { sha256: (await kb2.brokerKeys()).receiptKey.sha256 };
    assert.ok(verifyShredReceipt(receipt, pinned), 'the stored receipt verifies');
    assert.equal(hsm.rootKeyCount, 1, 'exactly one OEK (the new one) remains in the HSM');
    assert.equal(text((await kb2.decrypt(B, { ciphertext: bCt, aad: ctx })).plaintext), 'b data');
    assert.equal(text((await kb2.decrypt(B, { ciphertext: c2Ct, aad: ctx })).plaintext), 'c2 data');
    await kb2.close();
  });
}

test('a shred whose epoch failed is retried in the background until it completes', async () => {
  const { hsm, dir, kb, bCt } = await setup();
  await kb.close();
  const live = await KeyBroker.open({ hsm, dataDir: dir, shredBatchMs: 0, shredRetryMs: 20 });
  hsm.crash = { method: 'destroyKey', after: 0 };
  assert.notEqual(await codeOf(() => live.destroyTenant(A)), 'no error');
  hsm.crash = undefined;
  for (let i = 0; i < 200 && registry(dir).shreds[0]?.state !== 'done'; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(registry(dir).shreds[0]?.state, 'done', 'the background retry did not finish the shred');
  assert.equal(hsm.rootKeyCount, 1);
  assert.equal(text((await live.decrypt(B, { ciphertext: bCt, aad: ctx })).plaintext), 'b data');
  await live.close();
});

test('tenant shred, died right after C_GenerateKey: the leftover OEK object is discarded, not adopted', async () => {
  const { hsm, dir, kb, bCt } = await setup();
  const generate = hsm.generateRootKey.bind(hsm);
  let leftover: string | undefined;
  hsm.generateRootKey = async (label) => {
    await generate(label);
    leftover = label;
    throw new Error('injected death after C_GenerateKey');
  };
  assert.notEqual(await codeOf(() => kb.destroyTenant(A)), 'no error', 'the injected crash must surface');
  hsm.generateRootKey = generate;
  await kb.close();
  assert.ok(leftover, 'the object was made before the crash');
  // SoftHSM can keep a half-made object after a SIGKILL inside C_GenerateKey: every wrap fails.
  const wrap = hsm.wrapKey.bind(hsm);
  hsm.wrapKey = async (root, key) => {
    if (root.label === leftover) throw new Error('CKR_GENERAL_ERROR');
    return wrap(root, key);
  };

  const kb2 = await KeyBroker.open({ hsm, dataDir: dir, shredBatchMs: 0 });
  const r = registry(dir);
  assert.ok(
    r.epochs.every((e) => e.state === 'done'),
    `epochs after resume: ${JSON.stringify(r.epochs)}`,
  );
  assert.equal(r.shreds[0]?.state, 'done');
  assert.equal(await hsm.findKey(leftover, 'root'), undefined, 'the leftover object is still in the HSM');
  assert.equal(hsm.rootKeyCount, 1, 'exactly one OEK (the fresh one) remains');
  assert.equal(text((await kb2.decrypt(B, { ciphertext: bCt, aad: ctx })).plaintext), 'b data');
  const t = ref('acme', 'after');
  await kb2.createTenant(t.org, t.tenant);
  const ct = (await kb2.encrypt(t, { plaintext: bytes('new'), aad: ctx })).ciphertext;
  assert.equal(text((await kb2.decrypt(t, { ciphertext: ct, aad: ctx })).plaintext), 'new');
  await kb2.close();
});
