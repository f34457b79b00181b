// Unit tests (fake HSM, logic above the Hsm interface): warm path never touches the HSM,
// single-flight unwraps, zeroing on eviction, degraded mode while the HSM is away.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { KeyBrokerOptions } from '../../daemon/src/keys/key-broker-options.ts';
import { KeyCache } from '../../daemon/src/keys/key-cache.ts';
import { FakeHsm } from '../support/fake-hsm.ts';
import { bytes, codeOf, cust, org, ref, text } from './harness.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function broker(hsm: FakeHsm, o: Partial<KeyBrokerOptions> = {}): Promise<KeyBroker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kb-unit-'));
  dirs.push(dataDir);
  return KeyBroker.open({ shredBatchMs: 0, ...o, hsm, dataDir });
}
const T = ref('acme', 't1');
const U = ref('acme', 't2');
const ctx = bytes('c');
const hsmCalls = (h: FakeHsm): number => [...h.calls.values()].reduce((a, b) => a + b, 0);

test('a warm encrypt/decrypt never touches the HSM', async () => {
  const hsm = new FakeHsm();
  const kb = await broker(hsm);
  await kb.createOrg(org('acme'));
  await kb.createTenant(T.org, T.tenant);
  await kb.encrypt(T, { plaintext: bytes('warm up'), aad: ctx });
  hsm.calls.clear();
  for (let i = 0; i < 100; i++) {
    const e = await kb.encrypt(T, { plaintext: bytes(`m${i}`), aad: ctx });
    assert.equal(text((await kb.decrypt(T, { ciphertext: e.ciphertext, aad: ctx })).plaintext), `m${i}`);
  }
  assert.equal(hsmCalls(hsm), 0, `HSM calls on the warm path: ${JSON.stringify([...hsm.calls])}`);
  await kb.close();
});

test('concurrent cold misses share one HSM unwrap (single-flight)', async () => {
  const hsm = new FakeHsm();
  const a = await broker(hsm);
  await a.createOrg(org('acme'));
  await a.createTenant(T.org, T.tenant);
  const cts = await Promise.all(
    Array.from({ length: 20 }, (_, i) => a.encrypt(T, { plaintext: bytes(`p${i}`), aad: ctx })),
  );
  await a.close();
  // A fresh broker over the same files: every key is cold.
  hsm.unwrapDelayMs = 20;
  const b = await KeyBroker.open({ hsm, dataDir: dirs[dirs.length - 1] as string });
  hsm.calls.clear();
  const out = await Promise.all(cts.map((c) => b.decrypt(T, { ciphertext: c.ciphertext, aad: ctx })));
  assert.deepEqual(
    out.map((o) => text(o.plaintext)),
    cts.map((_, i) => `p${i}`),
  );
  assert.equal(
    hsm.calls.get('unwrapKey'),
    1,
    `unwrapKey calls for 20 concurrent cold decrypts: ${hsm.calls.get('unwrapKey')}`,
  );
  await b.close();
});

test('KeyCache zeroes keys on eviction (LRU bound and explicit eviction)', async () => {
  let now = 0;
  const c = new KeyCache({ ttlMs: 1000, maxEntries: 2, degradedServeMs: 0, now: () => now });
  const raw = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2), new Uint8Array(32).fill(3)];
  const s = [];
  for (let i = 0; i < 3; i++)
    s.push(
      await c.get(
        `k${i}`,
        async () => raw[i] as Uint8Array,
        () => false,
      ),
    );
  assert.equal(c.size, 2);
  assert.ok(s[0]?.destroyed, 'the least recently used key was not zeroed');
  assert.ok(
    (raw[0] as Uint8Array).every((b) => b === 0),
    'evicted bytes not zeroed',
  );
  c.evict('k1');
  assert.ok((raw[1] as Uint8Array).every((b) => b === 0));
  now = 5000;
  c.sweep();
  assert.equal(c.size, 0);
  assert.ok((raw[2] as Uint8Array).every((b) => b === 0));
});

test('degraded mode: cached keys serve past their TTL for degradedServeMs while the HSM is down', async () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const hsm = new FakeHsm();
  const kb = await broker(hsm, { clock: () => new Date(now), cache: { ttlMs: 1000 }, degradedServeMs: 5000 });
  await kb.createOrg(org('acme'));
  await kb.createTenant(T.org, T.tenant);
  await kb.createTenant(U.org, U.tenant);
  const warm = await kb.encrypt(T, { plaintext: bytes('warm'), aad: ctx });
  const cold = await kb.encrypt(U, { plaintext: bytes('cold'), aad: ctx });
  now += 2000; // past the TTL of everything
  hsm.down = true;
  assert.equal(kb.health().degraded, true, 'health must say degraded while the HSM is down');
  assert.equal(kb.health().ready, true);
  assert.equal(
    text((await kb.decrypt(T, { ciphertext: warm.ciphertext, aad: ctx })).plaintext),
    'warm',
    'stale key must serve',
  );
  await kb.encrypt(T, { plaintext: bytes('still'), aad: ctx });
  // A key that was never cached cannot be served: the cold path reports the outage.
  const d = ref('acme', 'never-cached');
  assert.equal(
    await codeOf(() => kb.createTenant(d.org, d.tenant)),
    'HSM_UNAVAILABLE',
    'cold path must report HSM_UNAVAILABLE',
  );
  now += 5000; // past TTL + degradedServeMs
  assert.equal(
    await codeOf(() => kb.decrypt(U, { ciphertext: cold.ciphertext, aad: ctx })),
    'HSM_UNAVAILABLE',
  );
  assert.equal(
    await codeOf(() => kb.decrypt(T, { ciphertext: warm.ciphertext, aad: ctx })),
    'HSM_UNAVAILABLE',
  );
  hsm.down = false;
  assert.equal(
    text((await kb.decrypt(U, { ciphertext: cold.ciphertext, aad: ctx })).plaintext),
    'cold',
    'recovers when the HSM returns',
  );
  now += 11_000;
  assert.equal(kb.health().degraded, false, 'degraded flag clears after recovery');
  await kb.close();
});

test('a thrashing cache (1 entry, 32 customers, 64 calls in flight) serves every call correctly', async () => {
  const hsm = new FakeHsm();
  const kb = await broker(hsm, { cache: { maxEntries: 1 } });
  await kb.createOrg(org('acme'));
  await kb.createTenant(T.org, T.tenant);
  const customers = Array.from({ length: 32 }, (_, i) => cust(`c${i}`));
  for (const c of customers) await kb.createCustomer(T, c);
  const results = await Promise.allSettled(
    Array.from({ length: 64 }, async (_, i) => {
      const customer = customers[i % customers.length]!;
      const e = await kb.encrypt(T, { customer, plaintext: bytes(`m${i}`), aad: ctx });
      return text((await kb.decrypt(T, { ciphertext: e.ciphertext, aad: ctx })).plaintext);
    }),
  );
  const bad = results.flatMap((r, i) => {
    if (r.status === 'fulfilled') return r.value === `m${i}` ? [] : [`#${i}: wrong plaintext`];
    const e = r.reason as { code?: string; detail?: string };
    return [`#${i}: ${e.code ?? String(r.reason)} ${e.detail ?? ''}`];
  });
  assert.deepEqual(bad, [], 'calls that failed or returned the wrong plaintext');
  await kb.close();
});
