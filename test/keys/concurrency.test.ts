// Concurrency on real SoftHSM2: encrypt/decrypt loops run while customer, tenant and org keys
// rotate and another tenant (and a customer) are shredded. No wrong plaintext, no crash, no lost
// key; requests of the shredded tenant fail cleanly with NOT_FOUND.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { CustomerId, TenantRef } from '../../daemon/src/ids.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { codeOf, cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
const T1 = ref('acme', 't1');
const T2 = ref('acme', 't2');
const T3 = ref('acme', 'doomed');
const ITER = process.env.KB_SLOW_TESTS === '1' ? 1500 : 150;

before(async () => {
  env = await openSoftHsm('kb-conc');
  // A short cache TTL so workers keep missing and unwrapping while keys move underneath.
  kb = await openBroker(env.hsm, env.dataDir(), { cache: { ttlMs: 20, maxEntries: 8 }, hsmConcurrency: 4 });
  await kb.createOrg(org('acme'));
  for (const t of [T1, T2, T3]) {
    await kb.createTenant(t.org, t.tenant);
    await kb.createCustomer(t, cust('w'));
  }
  await kb.createCustomer(T2, cust('side'));
});
after(async () => {
  await kb.close();
  await env.close();
});

interface Made {
  t: TenantRef;
  customer: CustomerId;
  ct: Uint8Array;
  aad: Uint8Array;
  pt: string;
}

test(
  'encrypt/decrypt during rotations of every level and concurrent shreds',
  { timeout: 300_000 },
  async () => {
    const made: Made[] = [];
    const wrong: string[] = [];
    const unexpected: string[] = [];
    const doomedCodes = new Map<string, number>();
    let stop = false;

    const worker = async (t: TenantRef, customer: CustomerId, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const pt = randomBytes(16).toString('hex');
        const aad = randomBytes(4);
        try {
          const e = await kb.encrypt(t, { customer, plaintext: Buffer.from(pt), aad });
          const d = await kb.decrypt(t, { ciphertext: e.ciphertext, aad });
          if (Buffer.from(d.plaintext).toString() !== pt) wrong.push(`${t.tenant}/${customer} #${i}`);
          made.push({ t, customer, ct: e.ciphertext, aad, pt });
        } catch (err) {
          const code = (err as { code?: string }).code ?? String(err);
          if (t === T3 || customer === 'side') doomedCodes.set(code, (doomedCodes.get(code) ?? 0) + 1);
          else unexpected.push(`${t.tenant}/${customer} #${i}: ${code} ${(err as Error).message}`);
        }
      }
    };
    const rotations = async (): Promise<void> => {
      for (let i = 0; i < 6 && !stop; i++) {
        await kb.rotateCustomerKey(T1, cust('w'));
        await kb.rotateTenantKey(T2);
        await kb.rotateOrgKey(org('acme'));
        await kb.rotateCustomerKey(T2, cust('default'));
        await kb.rotateTenantKey(T1);
      }
    };
    const shreds = async (): Promise<void> => {
      await new Promise((r) => setTimeout(r, 50));
      const [r1, r2] = await Promise.all([kb.destroyTenant(T3), kb.destroyCustomer(T2, cust('side'))]);
      assert.ok(r1.body.includes('"doomed"') && r2.body.includes('"side"'));
    };
    await Promise.all([
      worker(T1, cust('default'), ITER),
      worker(T1, cust('w'), ITER),
      worker(T2, cust('default'), ITER),
      worker(T2, cust('w'), ITER),
      worker(T3, cust('default'), ITER),
      worker(T2, cust('side'), ITER),
      rotations(),
      shreds(),
    ]);
    stop = true;
    assert.deepEqual(wrong, [], 'wrong plaintexts');
    assert.deepEqual(unexpected, [], 'errors on tenants nobody touched');
    for (const code of doomedCodes.keys()) {
      assert.ok(
        ['NOT_FOUND', 'DECRYPTION_FAILED'].includes(code),
        `shredded entities failed with ${code}: ${JSON.stringify([...doomedCodes])}`,
      );
    }
    // No lost key: everything the survivors encrypted still decrypts after the dust settles.
    let checked = 0;
    for (const m of made) {
      if (m.t === T3 || m.customer === 'side') {
        const code = await codeOf(() => kb.decrypt(m.t, { ciphertext: m.ct, aad: m.aad }));
        assert.ok(['NOT_FOUND', 'DECRYPTION_FAILED'].includes(code), `shredded ciphertext gave ${code}`);
        continue;
      }
      const d = await kb.decrypt(m.t, { ciphertext: m.ct, aad: m.aad });
      assert.equal(Buffer.from(d.plaintext).toString(), m.pt);
      checked++;
    }
    assert.ok(checked >= ITER * 4, `only ${checked} survivor ciphertexts checked`);
    assert.equal(
      await codeOf(() => kb.encrypt(T3, { plaintext: Buffer.from('x'), aad: Buffer.from('') })),
      'NOT_FOUND',
    );
  },
);
