// Tenant asymmetric keys under the hierarchy, on real SoftHSM2 and real SQLite files: TEK rotation
// and a customer shred rewrap (and keep) the `tenant_keys` rows; stored rows that were tampered
// with or swapped do not load; and THE property: with a copy of every file taken before a tenant
// shred restored, and the same HSM, none of the tenant's sealed boxes or KEM ciphertexts open and
// its HSM signing keys are gone — while signatures made before still verify with the exported keys.
import assert from 'node:assert/strict';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { verifyWith } from '../../daemon/src/keys/asymmetric-key-ops.ts';
import { verifyShredReceipt } from '../../daemon/src/keys/receipt-signer.ts';
import type { AsymmetricKeyType } from '../../daemon/src/keys/asymmetric-key-store.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { sealBox } from '../../daemon/src/pqc/hpke-sealed-box.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
let rt: AsymmetricRuntime;
const A = ref('acme', 'tenant-a');
const B = ref('acme', 'tenant-b');
const none = new Uint8Array(0);

const open = (d: string) => openBroker(env.hsm, d, { pqc: { runtime: rt } });
const asym = (k: KeyBroker) => {
  assert.ok(k.asymmetric, 'KeyBroker.asymmetric is set when options.pqc is given');
  return k.asymmetric;
};
const SIG_KEYS: [string, AsymmetricKeyType, boolean][] = [
  ['sig-mldsa', 'ml-dsa-65', false],
  ['sig-ed', 'ed25519', false],
  ['sig-ec', 'ecdsa-p256', false],
  ['sig-comp', 'composite-mldsa65-ecdsa-p256', false],
  ['sig-comp-hsm', 'composite-mldsa65-ecdsa-p256', true],
];
const BOX_KEYS: [string, AsymmetricKeyType][] = [
  ['box-mlkem', 'ml-kem-768'],
  ['box-xwing', 'x-wing'],
];

before(async () => {
  env = await openSoftHsm('kb-asym');
  dir = env.dataDir();
  const engines = [new OpenSslEngine(), await LiboqsEngine.create()];
  // No worker pool here (the e2e suite runs the daemon's pool): routes as configured by default.
  rt = new AsymmetricRuntime(new PqcRouter(engines, DEFAULT_PQC_ROUTING));
  kb = await open(dir);
  await kb.createOrg(org('acme'));
  for (const t of [A, B]) {
    await kb.createTenant(t.org, t.tenant);
    for (const [id, type, hsm] of SIG_KEYS) await asym(kb).createKey(t, id, type, { hsmEcdsa: hsm });
    for (const [id, type] of BOX_KEYS) await asym(kb).createKey(t, id, type);
  }
});
after(async () => {
  await kb.close();
  await env.close();
});

/** The tenant's SQLite file (its name carries a random suffix). */
function tenantFile(d: string, tenant: string): string {
  const f = readdirSync(join(d, 'tenants/acme')).find((x) => x.startsWith(`${tenant}.`) && x.endsWith('.db'));
  assert.ok(f, `no file of ${tenant} in ${d}`);
  return join(d, 'tenants/acme', f);
}

function rows(
  d: string,
  tenant: string,
): { key_id: string; version: number; tek_version: number; wrapped: Buffer }[] {
  const db = new Database(tenantFile(d, tenant), { readonly: true });
  try {
    return db
      .prepare('SELECT key_id, version, tek_version, wrapped FROM tenant_keys ORDER BY key_id, version')
      .all() as never;
  } finally {
    db.close();
  }
}

/** Seal one box per KEM key of `t` (offline, with the exported public key). */
async function sealAll(k: KeyBroker, t: typeof A, msg: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const [id, type] of BOX_KEYS) {
    const pk = await asym(k).publicKey(t, id);
    out.set(id, await sealBox(type as 'ml-kem-768' | 'x-wing', pk.publicKey, bytes(msg)));
  }
  return out;
}

test('TEK rotation and a customer shred rewrap every tenant_keys row; keys keep working from a cold cache', async () => {
  const boxes = await sealAll(kb, A, 'before rotation');
  const before = rows(dir, 'tenant-a');
  assert.ok(before.length === SIG_KEYS.length + BOX_KEYS.length, `rows: ${before.length}`);
  await kb.rotateTenantKey(A);
  await kb.createCustomer(A, cust('c1'));
  await kb.destroyCustomer(A, cust('c1')); // rotates the TEK again and deletes older TEK rows
  const after1 = rows(dir, 'tenant-a');
  assert.deepEqual(
    after1.map((r) => [r.key_id, r.version]),
    before.map((r) => [r.key_id, r.version]),
    'every row kept',
  );
  for (const [i, r] of after1.entries()) {
    assert.ok(
      r.tek_version > (before[i]?.tek_version ?? 0),
      `${r.key_id}: tek_version moved to ${r.tek_version}`,
    );
    assert.notDeepEqual(r.wrapped, before[i]?.wrapped, `${r.key_id}: rewrapped`);
  }
  await kb.close();
  kb = await open(dir); // cold caches: every key is unwrapped under the new TEK
  for (const [id, blob] of boxes)
    assert.equal(
      text((await asym(kb).openBox(A, id, undefined, blob, none, none)).plaintext),
      'before rotation',
      id,
    );
  for (const [id, type] of SIG_KEYS) {
    const s = await asym(kb).sign(A, id, bytes('m'), none);
    const pk = await asym(kb).publicKey(A, id);
    assert.ok(
      verifyWith(rt, type, pk.publicKey, bytes('m'), s.signature, none),
      `${id} signs after rotation`,
    );
  }
});

test('a tampered or swapped stored row does not load (KEY_INTEGRITY, also for its public key), nothing else is affected', async () => {
  const [box] = (await sealAll(kb, B, 'x')).values();
  const cases: [string, (db: Database.Database) => void][] = [
    [
      'flipped wrapped byte',
      (db) =>
        db.prepare("UPDATE tenant_keys SET wrapped = wrapped || x'00' WHERE key_id = 'box-mlkem'").run(),
    ],
    [
      'wrapped swapped with another key',
      (db) =>
        db
          .prepare(
            "UPDATE tenant_keys SET wrapped = (SELECT wrapped FROM tenant_keys WHERE key_id = 'box-xwing') WHERE key_id = 'box-mlkem'",
          )
          .run(),
    ],
  ];
  for (const [name, mutate] of cases) {
    const copy = env.dataDir();
    cpSync(dir, copy, { recursive: true });
    const db = new Database(tenantFile(copy, 'tenant-b'), { fileMustExist: true });
    mutate(db);
    db.close();
    const k = await open(copy);
    try {
      assert.equal(
        await codeOf(() => asym(k).publicKey(B, 'box-mlkem')),
        'KEY_INTEGRITY',
        `${name}: public key`,
      );
      assert.equal(
        await codeOf(() => asym(k).openBox(B, 'box-mlkem', 1, box as Uint8Array, none, none)),
        'KEY_INTEGRITY',
        name,
      );
      assert.equal(
        await codeOf(() => asym(k).decapsulate(B, 'box-mlkem', 1, new Uint8Array(1088))),
        'KEY_INTEGRITY',
        `${name}: decapsulate`,
      );
    } finally {
      await k.close();
    }
  }
});

test('destroy tenant: a restored backup and the HSM open none of its boxes and sign with none of its keys; old signatures verify', async () => {
  const boxes = await sealAll(kb, A, 'tenant A secret');
  const enc = await asym(kb).encapsulate(A, 'box-mlkem');
  const signed: { id: string; type: AsymmetricKeyType; pk: Uint8Array; sig: Uint8Array }[] = [];
  for (const [id, type] of SIG_KEYS) {
    const s = await asym(kb).sign(A, id, bytes('signed before the shred'), none);
    signed.push({ id, type, pk: (await asym(kb).publicKey(A, id)).publicKey, sig: s.signature });
  }
  const bBoxes = await sealAll(kb, B, 'tenant B data');
  const snap = env.dataDir();
  cpSync(dir, snap, { recursive: true });

  const receipt = await kb.destroyTenant(A);
  assert.equal(
    await codeOf(() =>
      asym(kb).openBox(A, 'box-xwing', undefined, boxes.get('box-xwing') as Uint8Array, none, none),
    ),
    'NOT_FOUND',
  );
  for (const [id, blob] of bBoxes)
    assert.equal(
      text((await asym(kb).openBox(B, id, undefined, blob, none, none)).plaintext),
      'tenant B data',
      `B ${id}`,
    );

  const restored = env.dataDir();
  rmSync(restored, { recursive: true, force: true });
  cpSync(snap, restored, { recursive: true });
  const old = await open(restored);
  try {
    for (const [id, blob] of boxes)
      assert.equal(
        await codeOf(() => asym(old).openBox(A, id, undefined, blob, none, none)),
        'DECRYPTION_FAILED',
        `A ${id} box from the backup`,
      );
    assert.equal(
      await codeOf(() => asym(old).decapsulate(A, 'box-mlkem', undefined, enc.cipherText)),
      'DECRYPTION_FAILED',
      'A KEM ciphertext from the backup',
    );
    for (const [id] of SIG_KEYS)
      assert.equal(
        await codeOf(() => asym(old).sign(A, id, bytes('forged'), none)),
        'DECRYPTION_FAILED',
        `A ${id} signs from the backup`,
      );
  } finally {
    await old.close();
  }
  // The HSM halves were destroyed in the token (their labels are in the backup's rows).
  const db = new Database(tenantFile(snap, 'tenant-a'), { readonly: true });
  const rows = db
    .prepare('SELECT key_id, version, alg, meta FROM tenant_keys ORDER BY key_id, version')
    .all() as {
    key_id: string;
    version: number;
    alg: string;
    meta: string;
  }[];
  db.close();
  const labels = rows
    .map((r) => (JSON.parse(r.meta) as { hsmLabel?: string }).hsmLabel)
    .filter((l): l is string => l !== undefined);
  // The receipt names every key of the tenant by id, with its versions and token labels.
  const want = new Map<
    string,
    { keyId: string; algorithm: string; versions: number[]; hsmLabels?: string[] }
  >();
  for (const r of rows) {
    const k = want.get(r.key_id) ?? { keyId: r.key_id, algorithm: r.alg, versions: [] };
    k.versions.push(r.version);
    const l = (JSON.parse(r.meta) as { hsmLabel?: string }).hsmLabel;
    if (l !== undefined) k.hsmLabels = [...(k.hsmLabels ?? []), l].sort();
    want.set(r.key_id, k);
  }
  const named = JSON.parse(receipt.body) as { destroyed: { keys?: unknown[]; keyCount?: number } };
  assert.ok(want.size >= SIG_KEYS.length + 2, `tenant A had ${want.size} keys`);
  assert.deepEqual(named.destroyed.keys, [...want.values()], 'the receipt names every key of the tenant');
  assert.equal(named.destroyed.keyCount, want.size);
  assert.ok(
    verifyShredReceipt(receipt, { sha256: (await kb.brokerKeys()).receiptKey.sha256 }),
    'the receipt with its key list verifies',
  );
  assert.equal(labels.length, 2, 'tenant A had two HSM signing keys');
  for (const l of labels)
    assert.equal(await env.hsm.findKey(l, 'signing'), undefined, `${l} still in the HSM`);
  const destroyed = (JSON.parse(receipt.body) as { destroyed: { hsmKeyLabels?: string[] } }).destroyed;
  assert.deepEqual(
    destroyed.hsmKeyLabels,
    [...labels].sort(),
    'the signed receipt names the destroyed token keys',
  );
  // Signatures made before the shred still verify with the exported public keys.
  for (const s of signed)
    assert.ok(
      verifyWith(rt, s.type, s.pk, bytes('signed before the shred'), s.sig, none),
      `${s.id}: old signature`,
    );
  // Tenant B keeps working after a restart with the current files.
  await kb.close();
  kb = await open(dir);
  for (const [id, blob] of bBoxes)
    assert.equal(
      text((await asym(kb).openBox(B, id, undefined, blob, none, none)).plaintext),
      'tenant B data',
      `B ${id} after restart`,
    );
});
