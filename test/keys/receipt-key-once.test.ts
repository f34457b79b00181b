// The broker's receipt signing key is made in the HSM on first use. Several shreds that are the
// first ones at the same time must share that one creation: every receipt verifies under the same
// public key, and the broker still signs after a restart with the key it registered.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { verifyShredReceipt } from '../../daemon/src/keys/key-broker.ts';
import { cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
before(async () => {
  env = await openSoftHsm('kb-receipt-once');
});
after(async () => {
  await env.close();
});

test('six concurrent first shreds sign with one receipt key, kept across a restart', async () => {
  const dir = env.dataDir();
  const kb = await openBroker(env.hsm, dir);
  await kb.createOrg(org('acme'));
  // One customer in each of six tenants: shreds of different tenants run at the same time.
  const owners = ['t1', 't2', 't3', 't4', 't5', 't6'].map((t) => ref('acme', t));
  for (const t of owners) {
    await kb.createTenant(t.org, t.tenant);
    await kb.createCustomer(t, cust('c1'));
  }
  const receipts = await Promise.all(owners.map((t) => kb.destroyCustomer(t, cust('c1'))));
  const keys = new Set(receipts.map((r) => r.publicKeyPem));
  assert.equal(keys.size, 1, `receipts signed under ${keys.size} different keys, wanted 1`);
  const pinned = { publicKeyPem: (await kb.brokerKeys()).receiptKey.publicKeyPem };
  for (const [i, r] of receipts.entries()) assert.ok(verifyShredReceipt(r, pinned), `receipt ${i} verifies`);
  await kb.close();

  const again = await openBroker(env.hsm, dir);
  try {
    const A = ref('acme', 't1');
    await again.createCustomer(A, cust('c7'));
    const later = await again.destroyCustomer(A, cust('c7'));
    assert.equal(later.publicKeyPem, [...keys][0], 'after a restart the registered key signs');
    assert.ok(verifyShredReceipt(later, pinned), 'the later receipt verifies');
  } finally {
    await again.close();
  }
});
