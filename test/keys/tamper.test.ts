// The tamper loop on every decrypt/unwrap path of the broker, on real SoftHSM2: every bit flipped,
// every truncation, wrong AAD, wrong tenant, wrong customer, headers swapped between tenants.
// All must give the one opaque DECRYPTION_FAILED.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { parseEnvelope } from '../../daemon/src/wire/envelope-v1.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
const A = ref('acme', 'ta');
const B = ref('acme', 'tb');
const ctx = bytes('ctx');

before(async () => {
  env = await openSoftHsm('kb-tamper');
  kb = await openBroker(env.hsm, env.dataDir());
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
  // Same customer names in both tenants, so swapped headers name customers that exist.
  for (const t of [A, B]) for (const c of ['c2', 'zzzzzzz']) await kb.createCustomer(t, cust(c));
});
after(async () => {
  await kb.close();
  await env.close();
});

type Opener = (blob: Uint8Array, aad: Uint8Array, t?: typeof A) => Promise<unknown>;
const paths: [string, (t: typeof A) => Promise<Uint8Array>, Opener][] = [
  [
    'decrypt',
    async (t) => (await kb.encrypt(t, { plaintext: bytes('sixteen byte msg'), aad: ctx })).ciphertext,
    (blob, aad, t = A) => kb.decrypt(t, { ciphertext: blob, aad }),
  ],
  [
    'decryptDataKey',
    async (t) => (await kb.generateDataKey(t, { aad: ctx, length: 16 })).wrappedKey,
    (blob, aad, t = A) => kb.decryptDataKey(t, { wrappedKey: blob, aad }),
  ],
  [
    'rewrap',
    async (t) => (await kb.encrypt(t, { plaintext: bytes('sixteen byte msg'), aad: ctx })).ciphertext,
    (blob, aad, t = A) => kb.rewrap(t, { ciphertext: blob, aad }),
  ],
];

for (const [name, make, open] of paths) {
  test(`${name}: every bit flip and every truncation -> DECRYPTION_FAILED`, async () => {
    const blob = await make(A);
    await open(blob, ctx); // sanity: the untouched blob opens
    for (let i = 0; i < blob.length * 8; i++) {
      const t = Uint8Array.from(blob);
      t[i >> 3] = (t[i >> 3] as number) ^ (1 << (i & 7));
      const got = await codeOf(() => open(t, ctx));
      assert.equal(got, 'DECRYPTION_FAILED', `${name}: flipping bit ${i} of ${blob.length * 8} gave ${got}`);
    }
    for (let n = 0; n < blob.length; n++) {
      const got = await codeOf(() => open(blob.subarray(0, n), ctx));
      assert.equal(got, 'DECRYPTION_FAILED', `${name}: truncating to ${n} bytes gave ${got}`);
    }
  });

  test(`${name}: wrong AAD, wrong tenant, wrong customer, swapped headers -> DECRYPTION_FAILED`, async () => {
    const a = await make(A);
    const b = await make(B);
    const hdrLen = parseEnvelope(a).header.length;
    const pa = parseEnvelope(a);
    // Rename the customer in the header ('default') to another existing customer of the same tenant.
    const otherCustomer = (() => {
      const blob = Uint8Array.from(a);
      const off = 3 + 1 + pa.org.length + 1 + pa.tenant.length;
      const name = bytes('zzzzzzz');
      assert.equal(name.length, pa.customer.length);
      blob[off] = name.length;
      blob.set(name, off + 1);
      return blob;
    })();
    const cases: [string, Uint8Array, Uint8Array, typeof A][] = [
      ['wrong AAD', a, bytes('other'), A],
      ['empty AAD', a, new Uint8Array(0), A],
      ['wrong tenant (B opens A)', a, ctx, B],
      ['wrong org', a, ctx, ref('acmf', 'ta')],
      ['customer renamed in header', otherCustomer, ctx, A],
      ['A header + B body', Uint8Array.from([...a.subarray(0, hdrLen), ...b.subarray(hdrLen)]), ctx, A],
      [
        'B header + A body, opened by B',
        Uint8Array.from([...b.subarray(0, hdrLen), ...a.subarray(hdrLen)]),
        ctx,
        B,
      ],
      ['empty', new Uint8Array(0), ctx, A],
    ];
    for (const [cname, blob, aad, t] of cases) {
      const got = await codeOf(() => open(blob, aad, t));
      // An unknown org is not the caller's tenant at all: NOT_FOUND before any parsing.
      const want = cname === 'wrong org' ? 'NOT_FOUND' : 'DECRYPTION_FAILED';
      assert.equal(got, want, `${name}: ${cname} gave ${got}`);
    }
  });
}

test('decryptStream: header bit flips, chunk flips and truncations -> DECRYPTION_FAILED', async () => {
  const e = await kb.encryptStream(A, { aad: ctx });
  const chunks = [e.seal(bytes('chunk one'), false), e.seal(bytes('two'), true)];
  const run = async (header: Uint8Array, cs: Uint8Array[], aad = ctx, t = A): Promise<string> =>
    codeOf(async () => {
      const d = await kb.decryptStream(t, { header, aad });
      for (const c of cs) d.open(c);
      d.finish();
    });
  assert.equal(await run(e.header, chunks), 'no error');
  for (let i = 0; i < e.header.length * 8; i++) {
    const h = Uint8Array.from(e.header);
    h[i >> 3] = (h[i >> 3] as number) ^ (1 << (i & 7));
    assert.equal(await run(h, chunks), 'DECRYPTION_FAILED', `header bit ${i}`);
  }
  const c1 = chunks[1] as Uint8Array;
  for (let i = 0; i < c1.length * 8; i++) {
    const c = Uint8Array.from(c1);
    c[i >> 3] = (c[i >> 3] as number) ^ (1 << (i & 7));
    assert.equal(
      await run(e.header, [chunks[0] as Uint8Array, c]),
      'DECRYPTION_FAILED',
      `final chunk bit ${i}`,
    );
  }
  for (let n = 0; n < c1.length; n++) {
    assert.equal(
      await run(e.header, [chunks[0] as Uint8Array, c1.subarray(0, n)]),
      'DECRYPTION_FAILED',
      `final chunk cut to ${n}`,
    );
  }
  assert.equal(await run(e.header, chunks, bytes('x')), 'DECRYPTION_FAILED', 'wrong AAD');
  assert.equal(await run(e.header, chunks, ctx, B), 'DECRYPTION_FAILED', 'wrong tenant');
  assert.equal(await run(e.header, [chunks[0] as Uint8Array]), 'DECRYPTION_FAILED', 'truncated stream');
});
