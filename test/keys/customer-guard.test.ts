// The data plane's CustomerGuard (review H1), on real SoftHSM2: every decrypt path asks the guard
// with the customer its parsed header names, before any key is loaded (a cold broker records no
// cache miss, i.e. no TEK/CEK unwrap), and a refusal is the one opaque DECRYPTION_FAILED.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { CustomerId } from '../../daemon/src/ids.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let dir: string;
const T = ref('acme', 't1');
const aad = bytes('ctx');
const blobs: Record<string, Uint8Array> = {};
let header: Uint8Array;

before(async () => {
  env = await openSoftHsm('kb-guard');
  dir = env.dataDir();
  const kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(T.org, T.tenant);
  await kb.createCustomer(T, cust('c9'));
  blobs.ct = (await kb.encrypt(T, { customer: cust('c9'), plaintext: bytes('secret'), aad })).ciphertext;
  blobs.dk = (await kb.generateDataKey(T, { customer: cust('c9'), aad })).wrappedKey;
  header = (await kb.encryptStream(T, { customer: cust('c9'), aad })).header;
  await kb.close();
});
after(async () => {
  await env.close();
});

type Guarded = (kb: KeyBroker, guard: (c: CustomerId) => boolean) => Promise<unknown>;
const PATHS: [string, Guarded][] = [
  ['decrypt', (kb, g) => kb.decrypt(T, { ciphertext: blobs.ct as Uint8Array, aad }, g)],
  ['decryptBatch', (kb, g) => kb.decryptBatch(T, [{ ciphertext: blobs.ct as Uint8Array, aad }], g)],
  ['decryptDataKey', (kb, g) => kb.decryptDataKey(T, { wrappedKey: blobs.dk as Uint8Array, aad }, g)],
  ['rewrap', (kb, g) => kb.rewrap(T, { ciphertext: blobs.ct as Uint8Array, aad }, g)],
  ['decryptStream', (kb, g) => kb.decryptStream(T, { header, aad }, g)],
];

for (const [name, run] of PATHS) {
  test(`${name}: the guard sees the header's customer before any key is loaded; refused = opaque`, async () => {
    const kb = await openBroker(env.hsm, dir);
    try {
      const asked: string[] = [];
      const before = kb.stats().cacheMisses;
      const refuse = (c: CustomerId) => (asked.push(c), false);
      // A batch reports the refusal per item; the others throw it.
      const code =
        name === 'decryptBatch'
          ? ((await run(kb, refuse)) as { error?: { code: string } }[])[0]?.error?.code
          : await codeOf(() => run(kb, refuse));
      assert.equal(code, 'DECRYPTION_FAILED', `${name}: refused`);
      assert.deepEqual(asked, ['c9'], `${name}: asked about the header's customer`);
      assert.equal(kb.stats().cacheMisses, before, `${name}: no key was loaded`);
      // Allowed: the same call works.
      await run(kb, () => true);
      assert.ok(kb.stats().cacheMisses > before, `${name}: allowed, the keys load`);
    } finally {
      await kb.close();
    }
  });
}
