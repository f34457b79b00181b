/**
 * Unit tests of the client library that need no daemon: the generated types are up to date with
 * the protos, every RPC of the protos has a method and a retry class, the broker pool's failover
 * order, the backoff bounds, and the data-key cache's limits.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  GENERATED_FILE,
  methodName,
  protoRpcs,
  renderFormatted,
} from '../../clients/typescript/scripts/generate-types.ts';
import { BrokerPool } from '../../clients/typescript/src/broker-pool.ts';
import { DataKeyCache } from '../../clients/typescript/src/data-key-cache.ts';
import { KeybrokerClient } from '../../clients/typescript/src/keybroker-client.ts';
import { createDevCa } from '../../daemon/src/tls/dev-pki.ts';
import { RETRY_CLASS, backoffMs } from '../../clients/typescript/src/retry-policy.ts';
import type { RpcName } from '../../clients/typescript/src/retry-policy.ts';

describe('coverage of the protos', () => {
  test('src/generated/keybroker-v1.ts is what the generator makes of the current protos', async () => {
    const want = await renderFormatted();
    assert.ok(
      readFileSync(GENERATED_FILE, 'utf8') === want,
      'generated types are stale: run node clients/typescript/scripts/generate-types.ts',
    );
  });

  test('every RPC of proto/keybroker/v1 has a method on the client and a retry class', async () => {
    const ca = await createDevCa('unit CA');
    const leaf = await ca.issue({ commonName: 'unit', uris: ['spiffe://acme/alpha/app'], usage: 'client' });
    const c = new KeybrokerClient({
      addresses: ['127.0.0.1:1'],
      tls: {
        caPem: Buffer.from(ca.certPem),
        certPem: Buffer.from(leaf.certPem),
        keyPem: Buffer.from(leaf.keyPem),
      },
    });
    try {
      const rpcs = protoRpcs();
      assert.ok(rpcs.length >= 70, `found ${rpcs.length} RPCs in the protos`);
      const missing: string[] = [];
      for (const [service, rpc] of rpcs) {
        const api = (c as unknown as Record<string, Record<string, unknown> | undefined>)[
          methodName(service)
        ];
        if (typeof api?.[methodName(rpc)] !== 'function') missing.push(`${service}.${rpc}`);
        if (RETRY_CLASS[`${service}.${rpc}` as RpcName] === undefined)
          missing.push(`retry class of ${service}.${rpc}`);
      }
      assert.deepEqual(missing, [], 'RPCs without a client method or retry class');
      assert.equal(Object.keys(RETRY_CLASS).length, rpcs.length, 'RETRY_CLASS names no RPC the protos lack');
    } finally {
      c.close();
    }
  });
});

describe('BrokerPool', () => {
  test('ordered: first live broker; a broker marked down is skipped until its period ends', () => {
    let now = 0;
    const p = new BrokerPool(3, { downMs: 100, maxDownMs: 250, now: () => now });
    assert.equal(p.pick(), 0);
    p.markDown(0);
    assert.equal(p.pick(), 1, 'down broker skipped');
    now = 100;
    assert.equal(p.pick(), 0, 'back after downMs');
    p.markDown(0);
    now = 250;
    assert.equal(p.pick(), 1, 'second failure doubles the period (200 ms)');
    now = 300;
    assert.equal(p.pick(), 0);
    p.markDown(0);
    p.markDown(0);
    now = 300 + 249;
    assert.equal(p.pick(), 1, 'period capped at maxDownMs');
    now = 300 + 250;
    assert.equal(p.pick(), 0);
    p.markUp(0);
    assert.equal(p.isDown(0), false, 'markUp clears the mark');
  });

  test('round-robin rotates over live brokers; all down -> the one back first; exclude is honoured', () => {
    let now = 0;
    const p = new BrokerPool(3, { mode: 'round-robin', downMs: 100, now: () => now });
    assert.deepEqual([p.pick(), p.pick(), p.pick(), p.pick()], [0, 1, 2, 0]);
    p.markDown(1);
    const picks = Array.from({ length: 6 }, () => p.pick());
    assert.ok(!picks.includes(1), `down broker not picked: ${picks}`);
    now = 10;
    p.markDown(0);
    p.markDown(2);
    assert.equal(p.pick(), 1, 'all down: the earliest back');
    now = 200;
    assert.notEqual(p.pick(new Set([0, 1])), 0, 'excluded brokers are avoided');
    assert.throws(() => new BrokerPool(0), /at least one/);
  });
});

describe('backoff', () => {
  test('full jitter below the exponential ceiling; retry-after is a floor', () => {
    const o = { baseDelayMs: 50, maxDelayMs: 2_000 };
    const cases: [string, number, number, number, number, number][] = [
      // name, attempt, floor, random, min, max
      ['first retry, random 0', 1, 0, 0, 0, 0],
      ['first retry, random ~1', 1, 0, 0.999, 49.9, 50],
      ['third retry ceiling 200', 3, 0, 0.999, 199.7, 200],
      ['capped at maxDelayMs', 20, 0, 0.999, 1_990, 2_000],
      ['retry-after 300, random 0', 1, 300, 0, 300, 300],
      ['retry-after 300, random ~1', 3, 300, 0.999, 300, 500],
    ];
    for (const [name, attempt, floor, r, min, max] of cases) {
      const v = backoffMs(attempt, o, floor, () => r);
      assert.ok(v >= min && v <= max, `${name}: ${v} not in [${min}, ${max}]`);
    }
  });
});

describe('DataKeyCache', () => {
  test('limits evict the key; put refuses what a single record already exhausted', () => {
    let now = 0;
    const key = () => Buffer.alloc(32, 0xaa);
    const cases: {
      name: string;
      limits: ConstructorParameters<typeof DataKeyCache>[0];
      uses: number[];
      served: number;
      tick?: number;
    }[] = [
      { name: 'maxMessages 3', limits: { maxMessages: 3 }, uses: [1, 1, 1, 1], served: 2 },
      { name: 'maxBytes 10', limits: { maxBytes: 10 }, uses: [4, 4, 4], served: 1 },
      { name: 'maxAgeMs 10', limits: { maxAgeMs: 10 }, uses: [1, 1, 1], served: 1, tick: 6 },
    ];
    for (const c of cases) {
      const cache = new DataKeyCache(c.limits, () => now);
      now = 0;
      assert.equal(
        cache.put('id', key(), Buffer.from('w'), c.uses[0] ?? 0),
        true,
        `${c.name}: first put cached`,
      );
      const held = cache.take('id', 0);
      assert.ok(held !== undefined, `${c.name}: entry present`);
      // take(…, 0) counted a message: undo for the count below.
      held.messages--;
      let served = 0;
      for (const u of c.uses.slice(1)) {
        now += c.tick ?? 0;
        if (cache.take('id', u) !== undefined) served++;
      }
      assert.equal(served, c.served, `${c.name}: uses served from the cache`);
      assert.equal(cache.size, 0, `${c.name}: entry gone`);
    }
    const c = new DataKeyCache({ maxBytes: 10, maxMessages: 5 });
    assert.equal(c.put('big', key(), Buffer.from('w'), 10), false, 'a record of maxBytes is not cached');
    assert.equal(
      new DataKeyCache({ maxEntries: 0 }).put('x', key(), Buffer.from('w'), 1),
      false,
      'maxEntries 0',
    );
  });

  test('maxEntries evicts the least recently used; the cache keeps its own copy of the key', () => {
    const cache = new DataKeyCache({ maxEntries: 2 });
    const mine = Buffer.alloc(32, 1);
    cache.put('a', mine, Buffer.from('wa'), 1);
    cache.put('b', Buffer.alloc(32, 2), Buffer.from('wb'), 1);
    const a = cache.take('a', 1);
    cache.take('b', 1);
    cache.take('a', 1);
    cache.put('c', Buffer.alloc(32, 3), Buffer.from('wc'), 1);
    assert.equal(cache.take('b', 1), undefined, 'b was least recently used');
    assert.ok(cache.take('a', 1) !== undefined, 'a kept');
    mine.fill(9);
    assert.ok(a?.key.export().equals(Buffer.alloc(32, 1)), 'cache holds its own copy of the key');
    assert.equal(String(a?.key), '[object KeyObject]', 'the key never prints its bytes');
    cache.clear();
    assert.equal(cache.size, 0, 'clear drops every key');
    assert.throws(() => new DataKeyCache({ maxAgeMs: -1 }), /maxAgeMs/);
  });
});
