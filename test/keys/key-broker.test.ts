// KeyBroker on real SoftHSM2 + SQLite: lifecycle, round trips at every level and version,
// rotation, rewrap, min versions, usage limits, data keys, batches, streams.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { KeyVersion } from '../../daemon/src/ids.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
const T = ref('acme', 'tenant-a');
const ctx = bytes('record 42');
const v = (n: number): KeyVersion => n as KeyVersion;

before(async () => {
  env = await openSoftHsm('kb-broker');
  kb = await openBroker(env.hsm, env.dataDir());
  await kb.createOrg(org('acme'));
  await kb.createTenant(T.org, T.tenant);
});
after(async () => {
  await kb.close();
  await env.close();
});

test('lifecycle: create, list, describe, duplicate and unknown names', async () => {
  assert.equal((await kb.describeTenant(T)).key.primary, 1);
  assert.deepEqual(
    (await kb.listCustomers(T)).map((c) => c.customer),
    ['default'],
  );
  await kb.createCustomer(T, cust('alice'));
  const cases: [string, () => Promise<unknown>, string][] = [
    ['duplicate org', () => kb.createOrg(org('acme')), 'ALREADY_EXISTS'],
    ['duplicate tenant', () => kb.createTenant(T.org, T.tenant), 'ALREADY_EXISTS'],
    ['duplicate customer', () => kb.createCustomer(T, cust('alice')), 'ALREADY_EXISTS'],
    ['tenant in unknown org', () => kb.createTenant(org('nope'), T.tenant), 'NOT_FOUND'],
    ['unknown tenant', () => kb.describeTenant(ref('acme', 'nope')), 'NOT_FOUND'],
    ['unknown customer', () => kb.describeCustomer(T, cust('nope')), 'NOT_FOUND'],
    ['bad org name', () => kb.createOrg(org('Bad Name')), 'INVALID_ARGUMENT'],
    [
      'bad customer name',
      () => kb.encrypt(T, { customer: cust('../x'), plaintext: bytes('x'), aad: ctx }),
      'INVALID_ARGUMENT',
    ],
    [
      'unknown customer encrypt',
      () => kb.encrypt(T, { customer: cust('bob'), plaintext: bytes('x'), aad: ctx }),
      'NOT_FOUND',
    ],
  ];
  for (const [name, fn, want] of cases) assert.equal(await codeOf(fn), want, name);
  assert.deepEqual(
    (await kb.listOrgs()).map((o) => o.org),
    ['acme'],
  );
  assert.deepEqual(
    (await kb.listTenants(org('acme'))).map((t) => t.tenant),
    ['tenant-a'],
  );
});

test('round trips at every level and version: decrypt after rotating customer, tenant and org keys', async () => {
  await kb.createCustomer(T, cust('rot'));
  const c = { customer: cust('rot') };
  const made: { ct: Uint8Array; pt: string; version: number }[] = [];
  const encryptOne = async (label: string): Promise<void> => {
    const pt = `plaintext ${label}`;
    const r = await kb.encrypt(T, { ...c, plaintext: bytes(pt), aad: ctx });
    made.push({ ct: r.ciphertext, pt, version: r.keyVersion });
  };
  await encryptOne('cek1');
  for (const [label, rotate] of [
    ['cek2', () => kb.rotateCustomerKey(T, cust('rot'))],
    ['tek2', () => kb.rotateTenantKey(T)],
    ['oek2', () => kb.rotateOrgKey(org('acme'))],
    ['cek3', () => kb.rotateCustomerKey(T, cust('rot'))],
    ['tek3', () => kb.rotateTenantKey(T)],
  ] as const) {
    await rotate();
    await encryptOne(label);
  }
  assert.deepEqual(
    made.map((m) => m.version),
    [1, 2, 2, 2, 3, 3],
    'CEK versions used',
  );
  for (const m of made) {
    const r = await kb.decrypt(T, { ciphertext: m.ct, aad: ctx });
    assert.equal(text(r.plaintext), m.pt, `decrypt of ${m.pt}`);
    assert.equal(r.keyVersion, m.version);
    assert.equal(r.customer, 'rot');
  }
  const info = await kb.describeCustomer(T, cust('rot'));
  assert.deepEqual(
    info.key.versions.map((x) => x.version),
    [1, 2, 3],
  );
  assert.ok((await kb.describeOrg(org('acme'))).key.primary >= 2);
  assert.equal((await kb.describeTenant(T)).key.primary, 3);
});

test('rewrap moves ciphertexts and wrapped data keys to the primary without returning plaintext', async () => {
  await kb.createCustomer(T, cust('rw'));
  const c = cust('rw');
  const ct = await kb.encrypt(T, { customer: c, plaintext: bytes('move me'), aad: ctx });
  const dk = await kb.generateDataKey(T, { customer: c, aad: ctx });
  await kb.rotateCustomerKey(T, c);
  const r1 = await kb.rewrap(T, { ciphertext: ct.ciphertext, aad: ctx });
  const r2 = await kb.rewrap(T, { ciphertext: dk.wrappedKey, aad: ctx });
  assert.equal(r1.keyVersion, 2);
  assert.equal(r2.keyVersion, 2);
  assert.ok(!('plaintext' in r1));
  assert.equal(text((await kb.decrypt(T, { ciphertext: r1.ciphertext, aad: ctx })).plaintext), 'move me');
  assert.deepEqual(
    (await kb.decryptDataKey(T, { wrappedKey: r2.ciphertext, aad: ctx })).plaintextKey,
    dk.plaintextKey,
  );
  assert.equal(
    await codeOf(() => kb.rewrap(T, { ciphertext: ct.ciphertext, aad: bytes('wrong') })),
    'DECRYPTION_FAILED',
  );
});

test('minimum versions and disabled versions are enforced (after authentication)', async () => {
  await kb.createCustomer(T, cust('mv'));
  const c = cust('mv');
  const old = await kb.encrypt(T, { customer: c, plaintext: bytes('v1'), aad: ctx });
  await kb.rotateCustomerKey(T, c);
  await kb.rotateCustomerKey(T, c);
  const mid = await kb.encrypt(T, { customer: c, plaintext: bytes('v3'), aad: ctx });
  assert.equal(
    await codeOf(() => kb.setKeyPolicy(T, c, { minDecryptVersion: v(4) })),
    'FAILED_PRECONDITION',
    'min above primary',
  );
  assert.equal(
    await codeOf(() => kb.setKeyVersionEnabled(T, c, v(3), false)),
    'FAILED_PRECONDITION',
    'disable primary',
  );
  await kb.setKeyPolicy(T, c, { minEncryptVersion: v(2), minDecryptVersion: v(2) });
  assert.equal(
    await codeOf(() => kb.decrypt(T, { ciphertext: old.ciphertext, aad: ctx })),
    'VERSION_BELOW_MINIMUM',
  );
  assert.equal(
    await codeOf(() => kb.decrypt(T, { ciphertext: old.ciphertext, aad: bytes('tampered') })),
    'DECRYPTION_FAILED',
  );
  assert.equal(text((await kb.decrypt(T, { ciphertext: mid.ciphertext, aad: ctx })).plaintext), 'v3');
  await kb.rotateCustomerKey(T, c);
  await kb.setKeyVersionEnabled(T, c, v(3), false);
  assert.equal(await codeOf(() => kb.decrypt(T, { ciphertext: mid.ciphertext, aad: ctx })), 'DISABLED');
  await kb.setKeyVersionEnabled(T, c, v(3), true);
  assert.equal(text((await kb.decrypt(T, { ciphertext: mid.ciphertext, aad: ctx })).plaintext), 'v3');
  await kb.setCustomerEnabled(T, c, false);
  assert.equal(
    await codeOf(() => kb.encrypt(T, { customer: c, plaintext: bytes('x'), aad: ctx })),
    'DISABLED',
  );
  await kb.setCustomerEnabled(T, c, true);
});

test('usage-limit rotation: the primary rotates after N operations', async () => {
  await kb.createCustomer(T, cust('use'), { usageLimit: 3 });
  const versions: number[] = [];
  for (let i = 0; i < 7; i++)
    versions.push(
      (await kb.encrypt(T, { customer: cust('use'), plaintext: bytes(`m${i}`), aad: ctx })).keyVersion,
    );
  assert.deepEqual(versions, [1, 1, 1, 2, 2, 2, 3]);
  const info = await kb.describeCustomer(T, cust('use'));
  assert.deepEqual(
    info.key.versions.map((x) => x.uses),
    [3, 3, 1],
  );
});

test('scheduled rotation rotates keys older than their period', async () => {
  const sched = ref('acme', 'sched');
  await kb.createTenant(sched.org, sched.tenant, { rotationPeriodSeconds: 60 });
  const later = new Date(Date.now() + 120_000);
  const r = await kb.rotateDueKeys(later);
  assert.equal(r.failed, 0);
  assert.ok(r.rotated >= 2, `rotated ${r.rotated}, wanted the tenant key and its default customer`);
  assert.equal((await kb.describeTenant(sched)).key.primary, 2);
  assert.equal((await kb.describeCustomer(sched, cust('default'))).key.primary, 2);
});

test('data keys: 16 and 32 bytes, bound to tenant and context', async () => {
  for (const length of [16, 32]) {
    const dk = await kb.generateDataKey(T, { aad: ctx, length });
    assert.equal(dk.plaintextKey.length, length);
    assert.deepEqual(
      (await kb.decryptDataKey(T, { wrappedKey: dk.wrappedKey, aad: ctx })).plaintextKey,
      dk.plaintextKey,
    );
    assert.equal(
      await codeOf(() => kb.decryptDataKey(T, { wrappedKey: dk.wrappedKey, aad: bytes('x') })),
      'DECRYPTION_FAILED',
    );
    assert.equal(
      await codeOf(() => kb.decrypt(T, { ciphertext: dk.wrappedKey, aad: ctx })),
      'DECRYPTION_FAILED',
      'a data key is not a ciphertext',
    );
  }
  assert.equal(await codeOf(() => kb.generateDataKey(T, { aad: ctx, length: 24 })), 'INVALID_ARGUMENT');
});

test('batch: per-item results with mixed good and bad items', async () => {
  const good = await kb.encrypt(T, { plaintext: bytes('good'), aad: ctx });
  const enc = await kb.encryptBatch(T, [
    { plaintext: bytes('a'), aad: ctx },
    { customer: cust('missing'), plaintext: bytes('b'), aad: ctx },
    { plaintext: new Uint8Array(5 * 1024 * 1024), aad: ctx },
  ]);
  assert.deepEqual(
    enc.map((r) => (r.ok ? 'ok' : r.error.code)),
    ['ok', 'NOT_FOUND', 'TOO_LARGE'],
  );
  const dec = await kb.decryptBatch(T, [
    { ciphertext: good.ciphertext, aad: ctx },
    { ciphertext: good.ciphertext, aad: bytes('wrong') },
    { ciphertext: new Uint8Array(3), aad: ctx },
  ]);
  assert.deepEqual(
    dec.map((r) => (r.ok ? text(r.value.plaintext) : r.error.code)),
    ['good', 'DECRYPTION_FAILED', 'DECRYPTION_FAILED'],
  );
});

test('batch over several customers: per-customer CEK, disabled and limited customers, results decrypt', async () => {
  for (const c of ['b-one', 'b-two', 'b-off', 'b-limit']) await kb.createCustomer(T, cust(c));
  await kb.setCustomerEnabled(T, cust('b-off'), false);
  await kb.setKeyPolicy(T, cust('b-limit'), { usageLimit: 2 });
  const before = await kb.encrypt(T, { customer: cust('b-two'), plaintext: bytes('earlier'), aad: ctx });
  await kb.rotateCustomerKey(T, cust('b-two'));
  const items = [
    { customer: cust('b-one'), plaintext: bytes('1'), aad: ctx },
    { customer: cust('b-two'), plaintext: bytes('2'), aad: ctx },
    { customer: cust('b-off'), plaintext: bytes('3'), aad: ctx },
    { customer: cust('b-limit'), plaintext: bytes('4'), aad: ctx },
    { customer: cust('b-one'), plaintext: bytes('5'), aad: new Uint8Array(64 * 1024 + 1) },
    { customer: cust('b-limit'), plaintext: bytes('6'), aad: ctx },
    { customer: cust('b-limit'), plaintext: bytes('7'), aad: ctx },
    { plaintext: bytes('8'), aad: ctx },
    { customer: cust('b-one'), plaintext: bytes('9'), aad: ctx },
  ];
  const enc = await kb.encryptBatch(T, items);
  assert.deepEqual(
    enc.map((r) => (r.ok ? `v${r.value.keyVersion}` : r.error.code)),
    ['v1', 'v2', 'DISABLED', 'v1', 'TOO_LARGE', 'v1', 'v2', 'v1', 'v1'],
    'b-two seals under its new primary; b-limit rotates after its 2nd use inside the batch',
  );
  const ok = enc.flatMap((r, i) => (r.ok ? [{ ct: r.value.ciphertext, want: items[i]?.plaintext }] : []));
  const dec = await kb.decryptBatch(
    T,
    ok.map((o) => ({ ciphertext: o.ct, aad: ctx })),
  );
  assert.deepEqual(
    dec.map((r) => (r.ok ? text(r.value.plaintext) : r.error.code)),
    ok.map((o) => text(o.want as Uint8Array)),
  );
  assert.deepEqual(
    dec.filter((r) => r.ok).map((r) => (r.ok ? r.value.customer : '')),
    ['b-one', 'b-two', 'b-limit', 'b-limit', 'b-limit', 'default', 'b-one'],
  );
  assert.equal(text((await kb.decrypt(T, { ciphertext: before.ciphertext, aad: ctx })).plaintext), 'earlier');
  // Items of a destroyed customer fail as a group; the others are unaffected.
  await kb.destroyCustomer(T, cust('b-two'));
  const after2 = await kb.encryptBatch(T, [
    { customer: cust('b-two'), plaintext: bytes('x'), aad: ctx },
    { customer: cust('b-one'), plaintext: bytes('y'), aad: ctx },
  ]);
  assert.deepEqual(
    after2.map((r) => (r.ok ? 'ok' : r.error.code)),
    ['NOT_FOUND', 'ok'],
  );
});

test('streams through the broker: round trip, truncation fails', async () => {
  const e = await kb.encryptStream(T, { aad: ctx });
  const chunks = [e.seal(bytes('part one '), false), e.seal(bytes('part two'), true)];
  const d = await kb.decryptStream(T, { header: e.header, aad: ctx });
  assert.equal(chunks.map((c) => text(d.open(c).plaintext)).join(''), 'part one part two');
  d.finish();
  const d2 = await kb.decryptStream(T, { header: e.header, aad: ctx });
  d2.open(chunks[0] as Uint8Array);
  assert.throws(() => d2.finish(), /decryption failed/);
  assert.equal(
    await codeOf(() => kb.decryptStream(ref('acme', 'sched'), { header: e.header, aad: ctx })),
    'DECRYPTION_FAILED',
  );
});

test('a disabled org or tenant refuses operations; re-enabling restores them', async () => {
  const ct = await kb.encrypt(T, { plaintext: bytes('x'), aad: ctx });
  await kb.setTenantEnabled(T, false);
  assert.equal(await codeOf(() => kb.decrypt(T, { ciphertext: ct.ciphertext, aad: ctx })), 'DISABLED');
  await kb.setTenantEnabled(T, true);
  await kb.setOrgEnabled(org('acme'), false);
  assert.equal(await codeOf(() => kb.encrypt(T, { plaintext: bytes('x'), aad: ctx })), 'DISABLED');
  await kb.setOrgEnabled(org('acme'), true);
  assert.equal(text((await kb.decrypt(T, { ciphertext: ct.ciphertext, aad: ctx })).plaintext), 'x');
});

test('keys survive a restart (new KeyBroker over the same files and token)', async () => {
  const dir = env.dataDir();
  const a = await openBroker(env.hsm, dir);
  await a.createOrg(org('restart'));
  const R = ref('restart', 't');
  await a.createTenant(R.org, R.tenant);
  const ct = await a.encrypt(R, { plaintext: bytes('persist'), aad: ctx });
  await a.rotateTenantKey(R);
  await a.close();
  const b = await openBroker(env.hsm, dir);
  assert.equal(text((await b.decrypt(R, { ciphertext: ct.ciphertext, aad: ctx })).plaintext), 'persist');
  await b.close();
  assert.equal(await codeOf(() => b.encrypt(R, { plaintext: bytes('x'), aad: ctx })), 'SHUTTING_DOWN');
});

test('tenant key usage limit: the TEK rotates after N CEK versions were wrapped under it', async () => {
  const U = ref('acme', 'tek-usage');
  await kb.createTenant(U.org, U.tenant, { usageLimit: 3 });
  await kb.createCustomer(U, cust('u1'));
  assert.equal((await kb.describeTenant(U)).key.primary, 1, 'default + u1 = 2 uses');
  await kb.createCustomer(U, cust('u2'));
  const info = await kb.describeTenant(U);
  assert.equal(info.key.primary, 2, `TEK versions: ${JSON.stringify(info.key.versions)}`);
  assert.deepEqual(
    info.key.versions.map((x) => x.uses),
    [3, 0],
  );
  const e = await kb.encrypt(U, { customer: cust('u2'), plaintext: bytes('after'), aad: ctx });
  assert.equal(text((await kb.decrypt(U, { ciphertext: e.ciphertext, aad: ctx })).plaintext), 'after');
});
