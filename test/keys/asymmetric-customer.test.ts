// Customer-level asymmetric keys on real SoftHSM2 and real SQLite files: a key created with a
// customer is wrapped under that customer's CEK (not the TEK), is found only with that customer
// named, survives TEK and CEK rotations and disabled CEK versions, and THE property: with a copy of every file taken before
// the customer's shred restored, and the same HSM, none of its sealed boxes or KEM ciphertexts
// open and none of its keys sign — while signatures made before verify with the exported keys,
// and the tenant's own keys and other customers' keys keep working.
import assert from 'node:assert/strict';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { keyVersion } from '../../daemon/src/ids.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { KeyOwner } from '../../daemon/src/keys/asymmetric-key-api.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { verifyWith } from '../../daemon/src/keys/asymmetric-key-ops.ts';
import type { AsymmetricKeyType } from '../../daemon/src/keys/asymmetric-key-store.ts';
import { sealBox } from '../../daemon/src/pqc/hpke-sealed-box.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
let rt: AsymmetricRuntime;
const A = ref('acme', 'tenant-a');
const C1: KeyOwner = { ...A, customer: cust('c1') };
const C2: KeyOwner = { ...A, customer: cust('c2') };
const none = new Uint8Array(0);

const open = (d: string) => openBroker(env.hsm, d, { pqc: { runtime: rt } });
const asym = (k: KeyBroker = kb) => {
  assert.ok(k.asymmetric, 'KeyBroker.asymmetric is set when options.pqc is given');
  return k.asymmetric;
};
const SIG: [string, AsymmetricKeyType, { hsmEcdsa: true }?][] = [
  ['c1-mldsa', 'ml-dsa-65'],
  ['c1-ed', 'ed25519'],
  ['c1-comp', 'composite-mldsa65-ecdsa-p256'],
  // In the HSM: a non-extractable ECDSA key, and a composite whose ECDSA half is one.
  ['c1-ec', 'ecdsa-p256'],
  ['c1-comp-hsm', 'composite-mldsa65-ecdsa-p256', { hsmEcdsa: true }],
];
const C1_HSM_KEYS = ['c1-ec', 'c1-comp-hsm'];
const BOX: [string, 'ml-kem-768' | 'x-wing'][] = [
  ['c1-mlkem', 'ml-kem-768'],
  ['c1-xwing', 'x-wing'],
];

before(async () => {
  env = await openSoftHsm('kb-asym-cust');
  dir = env.dataDir();
  rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  kb = await open(dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createCustomer(A, cust('c1'));
  await kb.createCustomer(A, cust('c2'));
  for (const [id, type, opts] of SIG) await asym().createKey(C1, id, type, opts);
  for (const [id, type] of BOX) await asym().createKey(C1, id, type);
  await asym().createKey(C2, 'c2-box', 'ml-kem-768');
  await asym().createKey(C2, 'c2-ec', 'ecdsa-p256');
  await asym().createKey(A, 'tenant-box', 'x-wing');
  await asym().createKey(A, 'tenant-ec', 'ecdsa-p256');
});
after(async () => {
  await kb.close();
  await env.close();
});

function tenantDb(d: string): Database.Database {
  const f = readdirSync(join(d, 'tenants/acme')).find((x) => x.startsWith('tenant-a.') && x.endsWith('.db'));
  assert.ok(f, `no tenant file in ${d}`);
  return new Database(join(d, 'tenants/acme', f), { readonly: true });
}
type Row = { key_id: string; version: number; customer: string; tek_version: number; cek_version: number };
/** Labels of the HSM-resident keys of `customer` ('' for tenant-level), from the rows of `d`. */
function hsmLabels(d: string, customer: string): string[] {
  const db = tenantDb(d);
  try {
    return (db.prepare('SELECT meta FROM tenant_keys WHERE customer = ?').all(customer) as { meta: string }[])
      .map((r) => (JSON.parse(r.meta) as { hsmLabel?: string }).hsmLabel)
      .filter((l): l is string => l !== undefined)
      .sort();
  } finally {
    db.close();
  }
}
function rows(d: string): Row[] {
  const db = tenantDb(d);
  try {
    return db
      .prepare(
        'SELECT key_id, version, customer, tek_version, cek_version FROM tenant_keys ORDER BY key_id, version',
      )
      .all() as Row[];
  } finally {
    db.close();
  }
}

async function sealAll(k: KeyBroker, owner: KeyOwner, ids: [string, 'ml-kem-768' | 'x-wing'][], msg: string) {
  const out = new Map<string, Uint8Array>();
  for (const [id, type] of ids)
    out.set(id, await sealBox(type, (await asym(k).publicKey(owner, id)).publicKey, bytes(msg)));
  return out;
}

test('a customer key is found only with its customer named, HSM-resident keys too', async () => {
  const cases: [string, () => Promise<unknown>, string][] = [
    ['tenant-level describe of a c1 key', () => asym().describeKey(A, 'c1-mlkem'), 'NOT_FOUND'],
    ['c2 describe of a c1 key', () => asym().describeKey(C2, 'c1-mlkem'), 'NOT_FOUND'],
    ['c2 sign with a c1 key', () => asym().sign(C2, 'c1-ed', bytes('x'), none), 'NOT_FOUND'],
    [
      'tenant-level sealBox to a c1 key',
      () => asym().sealBox(A, 'c1-xwing', bytes('x'), none, none),
      'NOT_FOUND',
    ],
    ['c1 use of a tenant-level key', () => asym().encapsulate(C1, 'tenant-box'), 'NOT_FOUND'],
    ['unknown customer', () => asym().describeKey({ ...A, customer: cust('nobody') }, 'c1-ed'), 'NOT_FOUND'],
    ['a key id in use by a customer', () => asym().createKey(A, 'c1-ed', 'ed25519'), 'ALREADY_EXISTS'],
    ['c2 sign with a c1 HSM key', () => asym().sign(C2, 'c1-ec', bytes('x'), none), 'NOT_FOUND'],
    [
      'tenant-level sign with a c1 HSM key',
      () => asym().sign(A, 'c1-comp-hsm', bytes('x'), none),
      'NOT_FOUND',
    ],
    [
      'hsm_ecdsa on a non-composite customer key',
      () => asym().createKey(C1, 'c1-x', 'ml-dsa-65', { hsmEcdsa: true }),
      'INVALID_ARGUMENT',
    ],
  ];
  for (const [name, fn, want] of cases) assert.equal(await codeOf(fn), want, name);
  const ids = (o: KeyOwner) =>
    asym()
      .listKeys(o)
      .then((l) => l.map((k) => k.keyId).sort());
  assert.deepEqual(await ids(C1), [...SIG, ...BOX].map(([id]) => id).sort(), 'c1 lists its own keys');
  assert.deepEqual(await ids(C2), ['c2-box', 'c2-ec'], 'c2 lists its own keys');
  assert.deepEqual(await ids(A), ['tenant-box', 'tenant-ec'], 'tenant-level list has no customer keys');
  assert.equal((await asym().describeKey(C1, 'c1-ed')).customer, 'c1', 'describe names the customer');
  for (const id of C1_HSM_KEYS) {
    const d = await asym().describeKey(C1, id);
    assert.deepEqual([d.customer, d.inHsm], ['c1', true], `${id}: a c1 key in the HSM`);
  }
  assert.equal(hsmLabels(dir, 'c1').length, C1_HSM_KEYS.length, 'one token key per c1 HSM key');
  for (const l of hsmLabels(dir, 'c1'))
    assert.ok(await env.hsm.findKey(l, 'signing'), `${l}: a c1 token key is in the HSM`);
  const jwks = await asym().jwks(C1);
  assert.equal(jwks.keys.length, SIG.length, 'c1 JWKS: its signature keys');
  assert.equal((await asym().jwks(A)).keys.length, 1, 'tenant JWKS: its own key, no customer keys');
});

test('customer rows are wrapped under the CEK: TEK rotations leave them alone; CEK rotation and cold start keep them working', async () => {
  const before = rows(dir).filter((r) => r.customer === 'c1');
  assert.ok(before.length === SIG.length + BOX.length, `c1 rows: ${before.length}`);
  for (const r of before)
    assert.deepEqual([r.tek_version, r.cek_version], [0, 1], `${r.key_id}: wrapped under CEK v1`);
  const boxes = await sealAll(kb, C1, BOX, 'under cek v1');
  await kb.rotateTenantKey(A);
  await kb.rotateCustomerKey(A, cust('c1'));
  await asym().rotateKey(C1, 'c1-mlkem');
  const after1 = rows(dir).filter((r) => r.customer === 'c1');
  const v2 = after1.find((r) => r.key_id === 'c1-mlkem' && r.version === 2);
  assert.deepEqual(
    [v2?.tek_version, v2?.cek_version],
    [0, 2],
    'a version made after the CEK rotation: CEK v2',
  );
  const tenantRow = rows(dir).find((r) => r.key_id === 'tenant-box');
  assert.equal(tenantRow?.tek_version, 2, 'the tenant key was rewrapped under TEK v2');
  await kb.close();
  kb = await open(dir);
  for (const [id, blob] of boxes) {
    const o = await asym().openBox(C1, id, undefined, blob, none, none);
    assert.deepEqual([text(o.plaintext), o.version], ['under cek v1', 1], `${id} after rotations, cold`);
  }
  for (const [id, type] of SIG) {
    const s = await asym().sign(C1, id, bytes('m'), none);
    assert.ok(
      verifyWith(rt, type, (await asym().publicKey(C1, id)).publicKey, bytes('m'), s.signature, none),
      id,
    );
  }
});

test('disabling CEK versions refuses the data under them, not the customer keys they wrap: those keys have their own versions and states', async () => {
  const c1 = cust('c1');
  const ct = await kb.encrypt(A, { customer: c1, plaintext: bytes('under cek v2'), aad: none });
  await kb.rotateCustomerKey(A, c1);
  await kb.setKeyVersionEnabled(A, c1, keyVersion(1), false);
  await kb.setKeyVersionEnabled(A, c1, keyVersion(2), false);
  const cekOf = (id: string, v: number) =>
    rows(dir).find((r) => r.customer === 'c1' && r.key_id === id && r.version === v)?.cek_version;
  assert.deepEqual(
    [cekOf('c1-ed', 1), cekOf('c1-mlkem', 2)],
    [1, 2],
    'the rows stay where they were wrapped',
  );
  await kb.close();
  kb = await open(dir);
  try {
    assert.equal(
      await codeOf(() => kb.decrypt(A, { ciphertext: ct.ciphertext, aad: none })),
      'DISABLED',
      'data under a disabled CEK version',
    );
    for (const [id, type] of SIG) {
      const s = await asym().sign(C1, id, bytes('m'), none);
      const pk = (await asym().publicKey(C1, id)).publicKey;
      assert.ok(
        verifyWith(rt, type, pk, bytes('m'), s.signature, none),
        `${id}: signs under a disabled CEK v1`,
      );
    }
    for (const [id, blob] of await sealAll(kb, C1, BOX, 'boxed')) {
      const o = await asym().openBox(C1, id, undefined, blob, none, none);
      assert.equal(text(o.plaintext), 'boxed', `${id}: opens under a disabled CEK version`);
    }
  } finally {
    await kb.setKeyVersionEnabled(A, c1, keyVersion(1), true);
    await kb.setKeyVersionEnabled(A, c1, keyVersion(2), true);
  }
  const d = await kb.decrypt(A, { ciphertext: ct.ciphertext, aad: none });
  assert.equal(text(d.plaintext), 'under cek v2', 'enabled again');
});

test('a customer row edited in the file (moved to the tenant or another customer, wrapped bytes flipped) does not load: KEY_INTEGRITY', async () => {
  const box = (await sealAll(kb, C1, [['c1-mlkem', 'ml-kem-768']], 'x')).get('c1-mlkem') as Uint8Array;
  const cases: [string, string, KeyOwner][] = [
    [
      'moved to the tenant level',
      "UPDATE tenant_keys SET customer = '', tek_version = cek_version WHERE key_id = 'c1-mlkem'",
      A,
    ],
    ['moved to customer c2', "UPDATE tenant_keys SET customer = 'c2' WHERE key_id = 'c1-mlkem'", C2],
    [
      'CEK version changed',
      "UPDATE tenant_keys SET cek_version = 2 WHERE key_id = 'c1-mlkem' AND version = 1",
      C1,
    ],
    [
      'wrapped bytes flipped',
      "UPDATE tenant_keys SET wrapped = zeroblob(length(wrapped)) WHERE key_id = 'c1-mlkem'",
      C1,
    ],
  ];
  for (const [name, sql, owner] of cases) {
    const copy = env.dataDir();
    cpSync(dir, copy, { recursive: true });
    const f = readdirSync(join(copy, 'tenants/acme')).find(
      (x) => x.startsWith('tenant-a.') && x.endsWith('.db'),
    );
    const db = new Database(join(copy, 'tenants/acme', f as string), { fileMustExist: true });
    db.prepare(sql).run();
    db.close();
    const k = await open(copy);
    try {
      assert.equal(
        await codeOf(() => asym(k).openBox(owner, 'c1-mlkem', 1, box, none, none)),
        'KEY_INTEGRITY',
        name,
      );
    } finally {
      await k.close();
    }
  }
});

test('destroy customer: a restored backup opens none of its boxes and signs with none of its keys; old signatures verify; others unaffected', async () => {
  const boxes = await sealAll(kb, C1, BOX, 'c1 secret');
  const enc = await asym().encapsulate(C1, 'c1-mlkem');
  const signed: { id: string; type: AsymmetricKeyType; pk: Uint8Array; sig: Uint8Array }[] = [];
  for (const [id, type] of SIG) {
    const s = await asym().sign(C1, id, bytes('signed before the shred'), none);
    signed.push({ id, type, pk: (await asym().publicKey(C1, id)).publicKey, sig: s.signature });
  }
  const c2Box = (await sealAll(kb, C2, [['c2-box', 'ml-kem-768']], 'c2 data')).get('c2-box') as Uint8Array;
  const tBox = (await sealAll(kb, A, [['tenant-box', 'x-wing']], 'tenant data')).get(
    'tenant-box',
  ) as Uint8Array;
  const snap = env.dataDir();
  cpSync(dir, snap, { recursive: true });

  const c1Labels = hsmLabels(dir, 'c1');
  const c1Keys = [
    ...new Set(
      rows(dir)
        .filter((r) => r.customer === 'c1')
        .map((r) => r.key_id),
    ),
  ];
  const otherLabels = [...hsmLabels(dir, 'c2'), ...hsmLabels(dir, '')];
  assert.equal(c1Labels.length, C1_HSM_KEYS.length, 'c1 token keys before the shred');
  const loadedBefore = asym().loadedKeys;
  const receipt = await kb.destroyCustomer(A, cust('c1'));
  // Their token objects were the only copy of those private keys: C_DestroyObject is their shred.
  for (const l of c1Labels)
    assert.equal(await env.hsm.findKey(l, 'signing'), undefined, `c1 token key ${l} still in the HSM`);
  for (const l of otherLabels)
    assert.ok(await env.hsm.findKey(l, 'signing'), `${l}: other owners' token keys stay`);
  const destroyed = (JSON.parse(receipt.body) as { destroyed: { hsmKeyLabels?: string[] } }).destroyed;
  assert.deepEqual(destroyed.hsmKeyLabels, c1Labels, 'the signed receipt names the destroyed token keys');
  // ...and every key of the customer by id (only those), with the token labels of its HSM halves.
  const named =
    (
      JSON.parse(receipt.body) as {
        destroyed: { keys?: { keyId: string; customer?: string; hsmLabels?: string[] }[] };
      }
    ).destroyed.keys ?? [];
  assert.deepEqual(
    named.map((k) => k.keyId),
    [...c1Keys].sort(),
    'the receipt names every c1 key',
  );
  assert.ok(named.every((k) => k.customer === 'c1'));
  assert.deepEqual(named.flatMap((k) => k.hsmLabels ?? []).sort(), c1Labels);
  assert.equal(rows(dir).filter((r) => r.customer === 'c1').length, 0, 'c1 rows deleted from the live file');
  assert.ok(
    asym().loadedKeys <= loadedBefore - SIG.length,
    `the ${SIG.length} c1 signing keys just used are zeroed by the shred itself, not at the next sweep: ` +
      `loaded keys ${loadedBefore} before, ${asym().loadedKeys} after`,
  );
  assert.equal(
    await codeOf(() =>
      asym().openBox(C1, 'c1-mlkem', undefined, boxes.get('c1-mlkem') as Uint8Array, none, none),
    ),
    'NOT_FOUND',
    'live: the customer is gone',
  );
  assert.equal(text((await asym().openBox(C2, 'c2-box', undefined, c2Box, none, none)).plaintext), 'c2 data');
  assert.equal(
    text((await asym().openBox(A, 'tenant-box', undefined, tBox, none, none)).plaintext),
    'tenant data',
  );
  for (const [owner, id] of [
    [C2, 'c2-ec'],
    [A, 'tenant-ec'],
  ] as const) {
    const s = await asym().sign(owner, id, bytes('after'), none);
    assert.ok(
      verifyWith(
        rt,
        'ecdsa-p256',
        (await asym().publicKey(owner, id)).publicKey,
        bytes('after'),
        s.signature,
        none,
      ),
      `${id} still signs in the HSM`,
    );
  }
  assert.equal(
    await codeOf(() => asym().createKey(C1, 'c1-late', 'ecdsa-p256')),
    'NOT_FOUND',
    'no new key for a destroyed customer',
  );

  const restored = env.dataDir();
  rmSync(restored, { recursive: true, force: true });
  cpSync(snap, restored, { recursive: true });
  const old = await open(restored);
  try {
    assert.ok(
      rows(restored).some((r) => r.customer === 'c1'),
      'the backup still holds the wrapped c1 rows (the shred is cryptographic, not a delete)',
    );
    for (const [id, blob] of boxes)
      assert.equal(
        await codeOf(() => asym(old).openBox(C1, id, undefined, blob, none, none)),
        'DECRYPTION_FAILED',
        `c1 ${id} box from the backup`,
      );
    assert.equal(
      await codeOf(() => asym(old).decapsulate(C1, 'c1-mlkem', 1, enc.cipherText)),
      'DECRYPTION_FAILED',
      'c1 KEM ciphertext from the backup',
    );
    for (const [id] of SIG)
      assert.equal(
        await codeOf(() => asym(old).sign(C1, id, bytes('forged'), none)),
        'DECRYPTION_FAILED',
        `c1 ${id} signs from the backup`,
      );
  } finally {
    await old.close();
  }
  for (const s of signed)
    assert.ok(
      verifyWith(rt, s.type, s.pk, bytes('signed before the shred'), s.sig, none),
      `${s.id}: old signature verifies with the exported public key`,
    );
  await kb.close();
  kb = await open(dir);
  assert.equal(text((await asym().openBox(C2, 'c2-box', undefined, c2Box, none, none)).plaintext), 'c2 data');
  assert.equal(
    text((await asym().openBox(A, 'tenant-box', undefined, tBox, none, none)).plaintext),
    'tenant data',
  );
});
