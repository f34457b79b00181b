// THE shred test, on real SoftHSM2: copy every keybroker file, destroy a tenant (and a customer),
// then with the copies restored and full use of the same HSM, nothing of the destroyed entity
// decrypts, while the survivors still do with the current files. Receipts verify offline.
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { verifyShredReceipt } from '../../daemon/src/keys/key-broker.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { ShredReceipt } from '../../daemon/src/keys/key-broker-api.ts';
import { unframeWrappedTek } from '../../daemon/src/wire/wrapped-key-v1.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
const A = ref('acme', 'tenant-a');
const B = ref('acme', 'tenant-b');
const ctx = bytes('ctx');

before(async () => {
  env = await openSoftHsm('kb-shred');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
  await kb.createCustomer(B, cust('c1'));
  await kb.createCustomer(B, cust('c2'));
});
after(async () => {
  await kb.close();
  await env.close();
});

/** A hot copy of every file under the data dir (registry, tenant files, WAL and SHM). */
function backup(): string {
  const to = env.dataDir();
  cpSync(dir, to, { recursive: true });
  return to;
}

/** What an attacker with the backup and the HSM can do at the lowest level: unwrap the TEK rows. */
async function unwrapTeksFromBackup(
  backupDir: string,
  tenant: string,
): Promise<{ tried: number; opened: number }> {
  const db = new Database(join(backupDir, 'registry.db'), { readonly: true });
  const rows = db
    .prepare(
      'SELECT t.wrapped AS wrapped, o.hsm_label AS label FROM tek_versions t JOIN oek_versions o ON o.org = t.org AND o.version = t.oek_version WHERE t.tenant = ?',
    )
    .all(tenant) as { wrapped: Buffer; label: string }[];
  db.close();
  let opened = 0;
  for (const r of rows) {
    const found = await env.hsm.findKey(r.label, 'root');
    try {
      await env.hsm.unwrapKey(
        found ?? { label: r.label, kind: 'root' },
        unframeWrappedTek('aes-kwp', new Uint8Array(r.wrapped)),
      );
      opened++;
    } catch {
      // expected: the OEK version is gone from the token
    }
  }
  return { tried: rows.length, opened };
}

/** A receipt of the same body made with a fresh key pair: what anyone can produce (review H2, E3). */
function forged(r: ShredReceipt): ShredReceipt {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    ...r,
    signature: sign('sha256', Buffer.from(r.body), privateKey).toString('base64'),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

async function checkReceipt(r: ShredReceipt, kind: string): Promise<Record<string, unknown>> {
  const keys = await kb.brokerKeys();
  const pinned = { publicKeyPem: keys.receiptKey.publicKeyPem };
  assert.ok(verifyShredReceipt(r, pinned), 'the receipt must verify offline against the pinned key');
  assert.ok(verifyShredReceipt(r, { sha256: keys.receiptKey.sha256 }), 'and against its pinned fingerprint');
  const body = JSON.parse(r.body) as Record<string, unknown>;
  assert.equal(body.kind, kind);
  const flipped = r.body.replace('"tenant-', '"tenanx-');
  assert.notEqual(flipped, r.body);
  const sig = Buffer.from(r.signature, 'base64');
  sig[sig.length - 1] = (sig[sig.length - 1] as number) ^ 1;
  const cases: [string, ShredReceipt][] = [
    ['body changed', { ...r, body: flipped }],
    ['signature changed', { ...r, signature: sig.toString('base64') }],
    ['algorithm changed', { ...r, signatureAlgorithm: 'rsa-pss-sha256-3072' }],
    ['signed with another key (the receipt carries it)', forged(r)],
    [
      'the pinned key put in the receipt, signed with another',
      { ...forged(r), publicKeyPem: r.publicKeyPem },
    ],
  ];
  for (const [name, t] of cases) {
    assert.equal(verifyShredReceipt(t, pinned), false, `tampered receipt (${name}) verified under the key`);
    assert.equal(
      verifyShredReceipt(t, { sha256: keys.receiptKey.sha256 }),
      false,
      `tampered receipt (${name}) verified under the fingerprint`,
    );
  }
  // The signed body names the signer key, the broker instance and the domain (v2).
  assert.equal(body.v, 2);
  assert.equal(body.domain, 'keybroker.shred-receipt.v1');
  assert.equal(body.signerKeySha256, keys.receiptKey.sha256);
  assert.equal(body.brokerInstance, keys.brokerInstance);
  // Made on SoftHSM2: the receipt says the shred is only as final as the token files (H3).
  assert.equal(body.softwareToken, true, 'a receipt made on a software token says so');
  return body;
}

test('destroy tenant: backups taken before the shred no longer decrypt it; the other tenant still does', async () => {
  const aCt = await kb.encrypt(A, { plaintext: bytes('tenant A secret'), aad: ctx });
  const aDk = await kb.generateDataKey(A, { aad: ctx });
  const bCt = await kb.encrypt(B, { plaintext: bytes('tenant B data'), aad: ctx });
  await kb.rotateOrgKey(org('acme')); // a retired (not destroyed) OEK version must also be covered
  const snap = backup();
  const aFiles = readdirSync(join(dir, 'tenants/acme')).filter((f) => f.startsWith('tenant-a.'));
  assert.ok(aFiles.length >= 1, 'tenant A has a file');

  const receipt = await kb.destroyTenant(A);
  const body = await checkReceipt(receipt, 'tenant');
  const epoch = body.epoch as {
    destroyedOrgKeys: { hsmLabel: string; version: number }[];
    newOrgKeyVersion: number;
  };
  assert.ok(epoch.destroyedOrgKeys.length >= 2, `destroyed OEKs: ${JSON.stringify(epoch.destroyedOrgKeys)}`);
  for (const k of epoch.destroyedOrgKeys)
    assert.equal(await env.hsm.findKey(k.hsmLabel, 'root'), undefined, `${k.hsmLabel} still in the HSM`);

  // Live: A is gone (NOT_FOUND), its file and WAL/SHM are gone, B still decrypts.
  assert.equal(await codeOf(() => kb.decrypt(A, { ciphertext: aCt.ciphertext, aad: ctx })), 'NOT_FOUND');
  assert.deepEqual(
    readdirSync(join(dir, 'tenants/acme')).filter((f) => f.startsWith('tenant-a.')),
    [],
  );
  assert.equal(
    text((await kb.decrypt(B, { ciphertext: bCt.ciphertext, aad: ctx })).plaintext),
    'tenant B data',
  );

  // Restore the backup into a fresh data dir and open a broker over it with the same HSM.
  const restored = backup();
  rmSync(restored, { recursive: true, force: true });
  cpSync(snap, restored, { recursive: true });
  assert.ok(existsSync(join(restored, 'tenants/acme', aFiles[0] as string)), 'the backup holds A file');
  const old = await openBroker(env.hsm, restored);
  try {
    assert.equal(
      await codeOf(() => old.decrypt(A, { ciphertext: aCt.ciphertext, aad: ctx })),
      'DECRYPTION_FAILED',
      'A ciphertext from backup',
    );
    assert.equal(
      await codeOf(() => old.decryptDataKey(A, { wrappedKey: aDk.wrappedKey, aad: ctx })),
      'DECRYPTION_FAILED',
      'A data key from backup',
    );
    // The whole org's pre-epoch backup is dead: documented (back the registry up again after an epoch).
    assert.equal(
      await codeOf(() => old.decrypt(B, { ciphertext: bCt.ciphertext, aad: ctx })),
      'DECRYPTION_FAILED',
      'B from the old backup',
    );
  } finally {
    await old.close();
  }
  const raw = await unwrapTeksFromBackup(snap, 'tenant-a');
  assert.ok(raw.tried >= 1, 'the backup holds wrapped TEKs of A');
  assert.equal(raw.opened, 0, 'a wrapped TEK of A from the backup unwrapped in the HSM');
  // The current files keep serving B after a restart.
  await kb.close();
  kb = await openBroker(env.hsm, dir);
  assert.equal(
    text((await kb.decrypt(B, { ciphertext: bCt.ciphertext, aad: ctx })).plaintext),
    'tenant B data',
  );
});

test('destroy customer: its backups no longer decrypt (also mixed with current files); siblings still do', async () => {
  const c1Ct = await kb.encrypt(B, { customer: cust('c1'), plaintext: bytes('c1 secret'), aad: ctx });
  const c1Dk = await kb.generateDataKey(B, { customer: cust('c1'), aad: ctx });
  const c2Ct = await kb.encrypt(B, { customer: cust('c2'), plaintext: bytes('c2 data'), aad: ctx });
  const defCt = await kb.encrypt(B, { plaintext: bytes('default data'), aad: ctx });
  const snap = backup();

  const receipt = await kb.destroyCustomer(B, cust('c1'));
  const body = await checkReceipt(receipt, 'customer');
  assert.equal(body.customer, 'c1');
  const destroyed = body.destroyed as { customerKeyVersions: number[]; tenantKeyVersions: number[] };
  assert.deepEqual(destroyed.customerKeyVersions, [1]);
  assert.ok(destroyed.tenantKeyVersions.length >= 1);

  assert.equal(
    await codeOf(() => kb.decrypt(B, { ciphertext: c1Ct.ciphertext, aad: ctx })),
    'DECRYPTION_FAILED',
  );
  assert.equal(
    await codeOf(() => kb.encrypt(B, { customer: cust('c1'), plaintext: bytes('x'), aad: ctx })),
    'NOT_FOUND',
  );
  assert.equal(text((await kb.decrypt(B, { ciphertext: c2Ct.ciphertext, aad: ctx })).plaintext), 'c2 data');
  assert.equal(
    text((await kb.decrypt(B, { ciphertext: defCt.ciphertext, aad: ctx })).plaintext),
    'default data',
  );

  // Full restore of the backup.
  const restored = env.dataDir();
  cpSync(snap, restored, { recursive: true });
  const old = await openBroker(env.hsm, restored);
  try {
    assert.equal(
      await codeOf(() => old.decrypt(B, { ciphertext: c1Ct.ciphertext, aad: ctx })),
      'DECRYPTION_FAILED',
    );
    assert.equal(
      await codeOf(() => old.decryptDataKey(B, { wrappedKey: c1Dk.wrappedKey, aad: ctx })),
      'DECRYPTION_FAILED',
    );
  } finally {
    await old.close();
  }
  // Mixed: current registry + the backed-up tenant file (which still holds c1's wrapped CEK).
  await kb.close();
  const mixed = env.dataDir();
  cpSync(dir, mixed, { recursive: true });
  const tdir = join(mixed, 'tenants/acme');
  for (const f of readdirSync(tdir).filter((x) => x.startsWith('tenant-b.'))) rmSync(join(tdir, f));
  for (const f of readdirSync(join(snap, 'tenants/acme')).filter((x) => x.startsWith('tenant-b.'))) {
    cpSync(join(snap, 'tenants/acme', f), join(tdir, f));
  }
  const mix = await openBroker(env.hsm, mixed);
  try {
    assert.equal(
      await codeOf(() => mix.decrypt(B, { ciphertext: c1Ct.ciphertext, aad: ctx })),
      'DECRYPTION_FAILED',
      'c1 via old tenant file',
    );
  } finally {
    await mix.close();
  }
  kb = await openBroker(env.hsm, dir);
  assert.equal(text((await kb.decrypt(B, { ciphertext: c2Ct.ciphertext, aad: ctx })).plaintext), 'c2 data');
});

test('concurrent destroys coalesce into one shred epoch; every receipt verifies', async () => {
  const names = ['x1', 'x2', 'x3', 'x4'];
  for (const n of names) await kb.createTenant(org('acme'), ref('acme', n).tenant);
  const before = (await kb.describeOrg(org('acme'))).key.primary;
  const receipts = await Promise.all(names.map((n) => kb.destroyTenant(ref('acme', n))));
  const epochs = new Set(receipts.map((r) => (JSON.parse(r.body) as { epoch: { id: number } }).epoch.id));
  assert.equal(epochs.size, 1, `epochs used: ${[...epochs].join(',')}`);
  const pinned = { publicKeyPem: (await kb.brokerKeys()).receiptKey.publicKeyPem };
  for (const r of receipts) assert.ok(verifyShredReceipt(r, pinned));
  assert.equal(
    (await kb.describeOrg(org('acme'))).key.primary,
    before + 1,
    'one new OEK version for four shreds',
  );
});
