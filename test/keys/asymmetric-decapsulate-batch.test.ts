// DecapsulateBatch on real SoftHSM2 + SQLite, on each path it can take: inline with no worker pool,
// inline in event-loop slices with a one-worker pool (one usable core: the hop would cost as much
// as the work), and split over a two-worker pool. Every path must give, item by item, what single
// Decapsulate calls give: the same secret for valid and flipped ciphertexts (implicit rejection),
// the one opaque error for a wrong length.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BATCH_PATHS, openPqcBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
const A = ref('acme', 'tenant-a');

before(async () => {
  env = await openSoftHsm('kb-asym-dbatch');
});
after(() => env.close());

for (const [name, workers] of BATCH_PATHS) {
  test(`DecapsulateBatch of 40 items, ${name}, equals single Decapsulate item by item`, async () => {
    const { kb, close } = await openPqcBroker(env, workers);
    try {
      const asym = kb.asymmetric;
      assert.ok(asym, 'KeyBroker.asymmetric is set when options.pqc is given');
      await kb.createOrg(org('acme'));
      await kb.createTenant(A.org, A.tenant);
      await asym.createKey(A, 'kem', 'ml-kem-768');
      const items: Uint8Array[] = [];
      for (let i = 0; i < 36; i++) {
        const ct = Buffer.from((await asym.encapsulate(A, 'kem')).cipherText);
        if (i % 9 === 4) ct[i] = (ct[i] ?? 0) ^ 0x80;
        items.push(ct);
      }
      const good = items[0] as Uint8Array;
      items.push(good.subarray(0, 10), new Uint8Array(0), Buffer.concat([good, Buffer.alloc(1)]), good);

      const batch = await asym.decapsulateBatch(A, 'kem', undefined, items);
      assert.equal(batch.results.length, items.length, 'one result per ciphertext');
      for (const [i, ct] of items.entries()) {
        const got = batch.results[i];
        let want: Uint8Array | string;
        try {
          want = (await asym.decapsulate(A, 'kem', batch.version, ct)).sharedSecret;
        } catch (err) {
          want = (err as { code?: string }).code ?? String(err);
        }
        if (typeof want === 'string') {
          assert.equal(got?.ok, false, `item ${i} (length ${ct.length}): single call failed with ${want}`);
          assert.equal(got.ok === false && got.error.code, want, `item ${i}: same error as the single call`);
        } else {
          assert.ok(got?.ok === true, `item ${i} (length ${ct.length}): single call succeeded`);
          assert.deepEqual(Buffer.from(got.value), Buffer.from(want), `item ${i}: same shared secret`);
        }
      }
    } finally {
      await close();
    }
  });
}
