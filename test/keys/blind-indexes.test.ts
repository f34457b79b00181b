// Keyed blind indexes on real SoftHSM2 + SQLite: tokens are HMAC-SHA256 under a key derived from
// the customer's CEK (checked against an independent computation from the unwrapped CEK), stable
// for one version and across CEK rotations, different per tenant, customer, index and version;
// rotation and min_version decide which versions a query gets; a customer or tenant shred makes
// the index keys unrecoverable, also with a copy of the tenant files restored afterwards.
import assert from 'node:assert/strict';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { cpSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { blindIndexKeyInfo, blindIndexToken } from '../../daemon/src/keys/blind-indexes.ts';
import type { BlindIndexQuery } from '../../daemon/src/keys/blind-indexes.ts';
import { subkeyOf } from '../../daemon/src/keys/cek-subkey.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
const A = ref('acme', 'ta');
const B = ref('acme', 'tb');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const q = (index: string, value: string, o: Partial<BlindIndexQuery> = {}): BlindIndexQuery => ({
  index,
  value: bytes(value),
  allSearchable: false,
  ...o,
});
const token = async (kbx: KeyBroker, r = A, query: BlindIndexQuery) =>
  hex((await kbx.blindIndexes.compute(r, query))[0]!.token);

before(async () => {
  env = await openSoftHsm('kb-bidx');
  dir = env.dataDir();
  kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
  await kb.createCustomer(A, cust('c1'));
  await kb.createCustomer(A, cust('c2'));
  for (const r of [A, B]) {
    await kb.blindIndexes.create(r, 'email', {
      normalization: ['nfkc', 'lowercase', 'trim'],
      outputBytes: 16,
    });
    await kb.blindIndexes.create(r, 'raw', { normalization: [], outputBytes: 32 });
  }
});
after(async () => {
  await kb.close();
  await env.close();
});

describe('tokens', () => {
  test('HMAC-SHA256 under HKDF(CEK, "keybroker blind index v1" ‖ context), truncated to the index length', () => {
    // Independent computation of the documented layout, against the functions compute() uses.
    const cek = randomBytes(32);
    const lp = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    const v = { version: 3, outputBytes: 16, normalization: 2 };
    const info = Buffer.concat([
      Buffer.from('keybroker blind index v1'),
      lp('acme'),
      lp('ta'),
      lp('c1'),
      u32(7),
      lp('email'),
      u32(3),
      u32(16),
      u32(2),
    ]);
    const key = Buffer.from(hkdfSync('sha256', cek, new Uint8Array(0), info, 32));
    const want = createHmac('sha256', key).update('alice@example.com').digest().subarray(0, 16);
    const got = blindIndexToken(
      subkeyOf(cek, blindIndexKeyInfo('acme', 'ta', 'c1', 7, 'email', v)),
      v,
      bytes('ALICE@example.com'),
    );
    assert.equal(hex(got), hex(want));
  });

  test('output length per index: 16 and 32 bytes', async () => {
    assert.equal((await kb.blindIndexes.compute(A, q('email', 'x')))[0]!.token.length, 16);
    assert.equal((await kb.blindIndexes.compute(A, q('raw', 'x')))[0]!.token.length, 32);
  });

  const same: [string, string, string][] = [
    ['case', 'Alice@Example.com', 'alice@example.com'],
    ['surrounding whitespace', '  alice@example.com\n', 'alice@example.com'],
    ['NFKC (fullwidth)', 'ａｌｉｃｅ@example.com', 'alice@example.com'],
    ['NFKC (composed vs decomposed)', 'jose\u0301@example.com', 'jos\u00e9@example.com'],
  ];
  for (const [name, a, b] of same)
    test(`normalizing index: same token for ${name}`, async () => {
      assert.equal(await token(kb, A, q('email', a)), await token(kb, A, q('email', b)));
    });

  test('the raw index does not normalize; equal inputs give equal tokens', async () => {
    assert.notEqual(await token(kb, A, q('raw', 'Alice')), await token(kb, A, q('raw', 'alice')));
    assert.equal(await token(kb, A, q('raw', 'alice')), await token(kb, A, q('raw', 'alice')));
  });

  test('different tenant, customer or index: different token for the same value', async () => {
    const v = 'bob@example.com';
    const all = [
      await token(kb, A, q('email', v)),
      await token(kb, B, q('email', v)),
      await token(kb, A, q('email', v, { customer: cust('c1') })),
      await token(kb, A, q('email', v, { customer: cust('c2') })),
      (await token(kb, A, q('raw', v))).slice(0, 32),
    ];
    assert.equal(new Set(all).size, all.length, `tokens collide: ${all.join(' ')}`);
  });

  test('a CEK rotation leaves the tokens of an index version unchanged', async () => {
    const before = await token(kb, A, q('email', 'carol@example.com', { customer: cust('c1') }));
    await kb.rotateCustomerKey(A, cust('c1'));
    assert.equal(await token(kb, A, q('email', 'carol@example.com', { customer: cust('c1') })), before);
  });

  test('not UTF-8 for a normalizing index: INVALID_ARGUMENT; the raw index takes any bytes', async () => {
    const bad = { index: 'email', value: new Uint8Array([0xff, 0xfe]), allSearchable: false };
    assert.equal(await codeOf(() => kb.blindIndexes.compute(A, bad)), 'INVALID_ARGUMENT');
    assert.equal((await kb.blindIndexes.compute(A, { ...bad, index: 'raw' }))[0]!.token.length, 32);
  });
});

describe('definitions and versions', () => {
  test('rotation: writes get the new version, queries every searchable version newest first', async () => {
    await kb.blindIndexes.create(A, 'phone', { normalization: ['trim'], outputBytes: 32 });
    const v1 = await token(kb, A, q('phone', '+15551234'));
    const info = await kb.blindIndexes.rotate(A, 'phone', { outputBytes: 16 });
    assert.equal(info.primaryVersion, 2);
    const write = await kb.blindIndexes.compute(A, q('phone', '+15551234'));
    assert.deepEqual(
      write.map((t) => t.version),
      [2],
    );
    assert.equal(write[0]!.token.length, 16);
    const query = await kb.blindIndexes.compute(A, q('phone', '+15551234', { allSearchable: true }));
    assert.deepEqual(
      query.map((t) => t.version),
      [2, 1],
    );
    assert.equal(hex(query[1]!.token), v1, 'the old version still gives the old token');
    await kb.blindIndexes.setMinVersion(A, 'phone', 2);
    const after = await kb.blindIndexes.compute(A, q('phone', '+15551234', { allSearchable: true }));
    assert.deepEqual(
      after.map((t) => t.version),
      [2],
      'retired version no longer searched',
    );
    const listed = (await kb.blindIndexes.list(A)).find((i) => i.name === 'phone');
    assert.deepEqual(
      listed?.versions.map((v) => [v.version, v.searchable, v.outputBytes]),
      [
        [1, false, 32],
        [2, true, 16],
      ],
    );
  });

  const bad: [string, () => Promise<unknown>, string][] = [
    [
      'create existing',
      () => kb.blindIndexes.create(A, 'email', { normalization: [], outputBytes: 16 }),
      'ALREADY_EXISTS',
    ],
    [
      'create bad name',
      () => kb.blindIndexes.create(A, 'Bad Name', { normalization: [], outputBytes: 16 }),
      'INVALID_ARGUMENT',
    ],
    [
      'create empty name',
      () => kb.blindIndexes.create(A, '', { normalization: [], outputBytes: 16 }),
      'INVALID_ARGUMENT',
    ],
    [
      'create length 20',
      () => kb.blindIndexes.create(A, 'x20', { normalization: [], outputBytes: 20 as 16 }),
      'INVALID_ARGUMENT',
    ],
    ['rotate unknown', () => kb.blindIndexes.rotate(A, 'nope'), 'NOT_FOUND'],
    ['min version 0', () => kb.blindIndexes.setMinVersion(A, 'email', 0), 'INVALID_ARGUMENT'],
    ['min version above primary', () => kb.blindIndexes.setMinVersion(A, 'email', 2), 'INVALID_ARGUMENT'],
    ['compute unknown index', () => kb.blindIndexes.compute(A, q('nope', 'x')), 'NOT_FOUND'],
    [
      'compute unknown customer',
      () => kb.blindIndexes.compute(A, q('email', 'x', { customer: cust('zz') })),
      'NOT_FOUND',
    ],
    [
      'compute value too long',
      () => kb.blindIndexes.compute(A, { index: 'raw', value: new Uint8Array(4097), allSearchable: false }),
      'TOO_LARGE',
    ],
    [
      'index of another tenant only',
      async () => {
        await kb.blindIndexes.create(B, 'only-b', { normalization: [], outputBytes: 16 });
        return kb.blindIndexes.compute(A, q('only-b', 'x'));
      },
      'NOT_FOUND',
    ],
  ];
  for (const [name, fn, code] of bad)
    test(`refused: ${name} -> ${code}`, async () => {
      assert.equal(await codeOf(fn), code);
    });

  test('batch: per-item user errors, shared keys', async () => {
    const r = await kb.blindIndexes.computeBatch(A, [q('email', 'a@x'), q('nope', 'b'), q('email', 'A@X ')]);
    assert.equal(r[0]?.ok, true);
    assert.equal(r[1]?.ok === false && r[1].error.code, 'NOT_FOUND');
    assert.ok(r[0]?.ok && r[2]?.ok);
    assert.equal(hex(r[0].value[0]!.token), hex(r[2].value[0]!.token));
  });
});

describe('shred', () => {
  test('customer shred: its index keys are gone, also from a restored copy of the files', async () => {
    await kb.createCustomer(A, cust('gone'));
    const before = await token(kb, A, q('email', 'dave@example.com', { customer: cust('gone') }));
    const sibling = await token(kb, A, q('email', 'dave@example.com', { customer: cust('c2') }));
    const snap = env.dataDir();
    cpSync(dir, snap, { recursive: true });
    await kb.destroyCustomer(A, cust('gone'));
    assert.equal(
      await codeOf(() => kb.blindIndexes.compute(A, q('email', 'x', { customer: cust('gone') }))),
      'NOT_FOUND',
    );
    assert.equal(await token(kb, A, q('email', 'dave@example.com', { customer: cust('c2') })), sibling);
    const restored = env.dataDir();
    cpSync(snap, restored, { recursive: true });
    const old = await openBroker(env.hsm, restored);
    try {
      const got = await codeOf(() =>
        old.blindIndexes.compute(A, q('email', 'dave@example.com', { customer: cust('gone') })),
      );
      // The CEK's TEK was wrapped under an OEK version the shred destroyed: the key cannot load.
      assert.ok(['DECRYPTION_FAILED', 'INTERNAL'].includes(got), `restored customer: ${got}`);
      assert.equal(before.length, 32);
    } finally {
      await old.close();
    }
  });

  test('tenant shred: its index keys are gone, also from a restored copy of the files', async () => {
    const T = ref('acme', 'tshred');
    await kb.createTenant(T.org, T.tenant);
    await kb.blindIndexes.create(T, 'email', { normalization: ['lowercase'], outputBytes: 32 });
    await token(kb, T, q('email', 'erin@example.com'));
    const snap = env.dataDir();
    cpSync(dir, snap, { recursive: true });
    await kb.destroyTenant(T);
    assert.equal(await codeOf(() => kb.blindIndexes.compute(T, q('email', 'x'))), 'NOT_FOUND');
    const restored = env.dataDir();
    cpSync(snap, restored, { recursive: true });
    const old = await openBroker(env.hsm, restored);
    try {
      const got = await codeOf(() => old.blindIndexes.compute(T, q('email', 'erin@example.com')));
      assert.notEqual(got, 'no error', 'the restored backup computed a token of the shredded tenant');
      assert.ok(
        ['DECRYPTION_FAILED', 'HSM_UNAVAILABLE', 'INTERNAL'].includes(got),
        `restored tenant: ${got}`,
      );
      // The other tenants of the org stay readable with the current files (checked in the main broker).
      assert.equal((await kb.blindIndexes.compute(A, q('email', 'x')))[0]!.token.length, 16);
    } finally {
      await old.close();
    }
  });
});
