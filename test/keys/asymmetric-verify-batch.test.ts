// VerifyBatch on real SoftHSM2 + SQLite, on each path it can take: inline with no worker pool,
// inline in event-loop slices with a one-worker pool (one usable core: the hop would cost about a
// quarter of the work), and split over a two-worker pool. Every path must give, item by item, the
// expected verdict and version (signatures of an older version still verify, tampered, re-labelled
// and wrong-length ones do not) and what single Verify calls give.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setImmediate } from 'node:timers';
import { BATCH_PATHS, openPqcBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
const A = ref('acme', 'tenant-a');
const te = (s: string) => new TextEncoder().encode(s);

before(async () => {
  env = await openSoftHsm('kb-asym-vbatch');
});
after(() => env.close());

for (const [name, workers] of BATCH_PATHS) {
  test(`VerifyBatch of 64 ML-DSA-65 items, ${name}: verdicts, versions, single Verify agrees`, async () => {
    const { kb, close } = await openPqcBroker(env, workers);
    try {
      const asym = kb.asymmetric;
      assert.ok(asym, 'KeyBroker.asymmetric is set when options.pqc is given');
      await kb.createOrg(org('acme'));
      await kb.createTenant(A.org, A.tenant);
      await asym.createKey(A, 'sig', 'ml-dsa-65');
      const ctx = te('verify-batch test');
      const messages = Array.from({ length: 32 }, (_, i) => te(`message ${i}`));
      const v1 = await asym.signBatch(A, 'sig', messages, ctx);
      await asym.rotateKey(A, 'sig');
      const v2 = await asym.signBatch(A, 'sig', messages, ctx);
      assert.deepEqual([v1.version, v2.version], [1, 2], 'signed under version 1, then 2');
      const sig = (r: { ok: true; value: Uint8Array } | { ok: false } | undefined): Uint8Array => {
        assert.ok(r?.ok === true, 'every signature was made');
        return r.value;
      };

      const items: { message: Uint8Array; signature: Uint8Array }[] = [];
      const want: { valid: boolean; version: number }[] = [];
      for (const [i, m] of messages.entries()) {
        const fromV1 = i % 2 === 0;
        const s = Buffer.from(sig((fromV1 ? v1 : v2).results[i]));
        let valid = true;
        if (i % 8 === 3) s[100] = (s[100] ?? 0) ^ 0x01; // one bit flipped
        if (i % 8 === 5) valid = false; // signed over another message (below)
        const message = i % 8 === 5 ? te(`other ${i}`) : m;
        if (i % 8 === 3) valid = false;
        items.push({ message, signature: i % 16 === 7 ? s.subarray(0, s.length - 1) : s });
        if (i % 16 === 7) valid = false; // truncated
        want.push(valid ? { valid: true, version: fromV1 ? 1 : 2 } : { valid: false, version: 0 });
      }
      // Pad to 64 with good version-2 items, so the batch runs long enough to yield.
      for (let i = 0; items.length < 64; i++) {
        items.push({ message: messages[i] as Uint8Array, signature: sig(v2.results[i]) });
        want.push({ valid: true, version: 2 });
      }

      // The event loop keeps turning while the batch runs (inline paths yield; the pool never blocks).
      let turns = 0;
      let done = false;
      const spin = (): void => {
        turns++;
        if (!done) setImmediate(spin);
      };
      setImmediate(spin);
      const got = await asym.verifyBatch(A, 'sig', undefined, items, ctx);
      done = true;
      assert.ok(turns >= 2, `the event loop turned ${turns} times during the batch`);

      assert.equal(got.length, items.length, 'one result per item');
      for (const [i, r] of got.entries()) {
        assert.ok(r.ok, `item ${i}: a verdict, not an error`);
        assert.deepEqual(r.value, want[i], `item ${i}: expected verdict and version`);
        const single = await asym.verify(A, 'sig', undefined, items[i] as (typeof items)[number], ctx);
        assert.deepEqual(single, r.value, `item ${i}: single Verify agrees`);
      }
      // Another context fails every item; version 1 alone accepts only its own signatures.
      const other = await asym.verifyBatch(A, 'sig', undefined, items, te('another context'));
      assert.ok(
        other.every((r) => r.ok && !r.value.valid),
        'another context: nothing verifies',
      );
      const only1 = await asym.verifyBatch(A, 'sig', 1, items, ctx);
      assert.deepEqual(
        only1.map((r) => r.ok && r.value.version),
        want.map((w) => (w.version === 1 ? 1 : 0)),
        'version 1 named: only its signatures verify',
      );
    } finally {
      await close();
    }
  });
}
