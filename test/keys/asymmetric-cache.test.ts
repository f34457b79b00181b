// The cache of unwrapped asymmetric keys (asymmetric-key-cache.ts) and the loaded keys it holds:
// TTL, size bound (LRU), single-flight loads, tenant-wide eviction, and that every way out of the
// cache destroys the entry — a loaded key's seed is zeroed and its engine handles freed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AsymmetricKeyCache } from '../../daemon/src/keys/asymmetric-key-cache.ts';
import { AsymmetricRuntime, LoadedKey } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { SecretBytes } from '../../daemon/src/util/secret-bytes.ts';

class Probe {
  destroyed = false;
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

function cache(now: { t: number }, maxEntries = 3, ttlMs = 1000) {
  return new AsymmetricKeyCache<Probe>({ ttlMs, maxEntries, now: () => now.t });
}

test('TTL: an expired entry is destroyed and reloaded; a fresh one is served without loading', async () => {
  const now = { t: 0 };
  const c = cache(now);
  let loads = 0;
  const load = () => Promise.resolve(new Probe(`v${++loads}`));
  const a = await c.get('o/t/k/1', load);
  assert.equal((await c.get('o/t/k/1', load)).name, 'v1', 'fresh entry served from the cache');
  now.t = 1001;
  const b = await c.get('o/t/k/1', load);
  assert.equal(b.name, 'v2', 'expired entry reloaded');
  assert.equal(a.destroyed, true, 'the expired entry was destroyed');
  now.t = 3000;
  c.sweep();
  assert.equal(b.destroyed, true, 'sweep destroys expired entries');
  assert.equal(c.size, 0);
});

test('size bound: the least recently used entry is destroyed first', async () => {
  const now = { t: 0 };
  const c = cache(now, 2);
  const p = (n: string) => () => Promise.resolve(new Probe(n));
  const a = await c.get('a', p('a'));
  const b = await c.get('b', p('b'));
  await c.get('a', p('a2')); // a is now the most recent
  const x = await c.get('x', p('x'));
  assert.deepEqual([a.destroyed, b.destroyed, x.destroyed], [false, true, false], 'b (LRU) evicted');
  assert.equal(c.size, 2);
});

test('single flight: concurrent misses share one load; a failed load is not cached', async () => {
  const c = cache({ t: 0 });
  let loads = 0;
  const slow = () => new Promise<Probe>((resolve) => setTimeout(() => resolve(new Probe(`v${++loads}`)), 10));
  const got = await Promise.all(Array.from({ length: 8 }, () => c.get('k', slow)));
  assert.equal(loads, 1, 'one load for 8 concurrent misses');
  assert.ok(got.every((g) => g === got[0]));
  await assert.rejects(c.get('bad', () => Promise.reject(new Error('unwrap failed'))));
  assert.equal(
    (await c.get('bad', () => Promise.resolve(new Probe('ok')))).name,
    'ok',
    'retried after a failure',
  );
});

test('evictPrefix (a tenant) destroys only that tenant; clear destroys everything', async () => {
  const c = cache({ t: 0 }, 10);
  const mk = (n: string) => () => Promise.resolve(new Probe(n));
  const a1 = await c.get('acme/a/k/1', mk('a1'));
  const a2 = await c.get('acme/a/j/1', mk('a2'));
  const ab = await c.get('acme/ab/k/1', mk('ab')); // a prefix of another tenant name
  assert.equal(c.evictPrefix('acme/a/'), 2);
  assert.deepEqual([a1.destroyed, a2.destroyed, ab.destroyed], [true, true, false]);
  c.clear();
  assert.equal(ab.destroyed, true);
});

test('destroying a loaded key zeroes its seed and frees its engine handles; later use is refused', () => {
  const rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine()], {
      enabled: ['openssl'],
      routes: {
        'kem.keygen': 'openssl',
        'kem.encapsulate': 'openssl',
        'kem.decapsulate': 'openssl',
        'sig.keygen': 'openssl',
        'sig.sign': 'openssl',
        'sig.verify': 'openssl',
      },
      offload: [],
    }),
  );
  const kp = rt.openssl.generateKeyPair('ml-dsa-65');
  const seedBytes = Uint8Array.from(kp.seed?.expose() ?? []);
  const seed = new SecretBytes(seedBytes);
  const k = new LoadedKey({ type: 'ml-dsa-65', version: 1, publicKey: kp.publicKey, seed });
  const h = k.handle(rt, 'sig.sign');
  assert.equal(
    rt.openssl.verify('ml-dsa-65', kp.publicKey, Uint8Array.of(1), rt.openssl.sign(h, Uint8Array.of(1))),
    true,
  );
  k.destroy();
  assert.ok(
    seedBytes.every((b) => b === 0),
    'the seed bytes are zeroed',
  );
  assert.equal(seed.destroyed, true);
  assert.throws(() => rt.openssl.sign(h, Uint8Array.of(1)), 'a destroyed handle cannot sign');
  assert.throws(
    () => k.handle(rt, 'sig.sign'),
    (e: { code?: string }) => e.code === 'DECRYPTION_FAILED',
  );
});

test('a key evicted while an operation holds it (use) is freed only when the operation settles', async () => {
  const rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine()], {
      enabled: ['openssl'],
      routes: {
        'kem.keygen': 'openssl',
        'kem.encapsulate': 'openssl',
        'kem.decapsulate': 'openssl',
        'sig.keygen': 'openssl',
        'sig.sign': 'openssl',
        'sig.verify': 'openssl',
      },
      offload: [],
    }),
  );
  const kp = rt.openssl.generateKeyPair('ml-kem-768');
  const seed = SecretBytes.copyOf(kp.seed?.expose() ?? new Uint8Array(0));
  const k = new LoadedKey({ type: 'ml-kem-768', version: 1, publicKey: kp.publicKey, seed });
  let release!: () => void;
  const op = k.use(() => new Promise<void>((r) => (release = r)).then(() => k.handle(rt, 'kem.decapsulate')));
  k.destroy(); // the cache evicts it meanwhile
  assert.equal(seed.destroyed, false, 'still pinned by the operation');
  release();
  await op;
  assert.equal(seed.destroyed, true, 'freed once the operation settled');
  await assert.rejects(
    k.use(() => Promise.resolve(1)),
    (e: { code?: string }) => e.code === 'DECRYPTION_FAILED',
  );
});
