// Token buckets per identity and per tenant with an injected clock; LRU bound; daily quotas.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { DailyQuota } from '../../daemon/src/policy/daily-quota.ts';
import { RateLimitedError, RateLimiter } from '../../daemon/src/policy/rate-limiter.ts';

function clock(start = 0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('RateLimiter', () => {
  it('allows a burst, then refuses with a retry hint that is exactly enough', () => {
    const c = clock();
    const rl = new RateLimiter({
      perIdentity: { ratePerSec: 10, burst: 5 },
      perTenant: { ratePerSec: 1000, burst: 1000 },
      now: c.now,
    });
    for (let i = 0; i < 5; i++)
      assert.deepEqual(rl.take('id-a', 'acme/t1'), { allow: true }, `call ${i} of the burst`);
    const d = rl.take('id-a', 'acme/t1');
    assert.deepEqual(d, { allow: false, scope: 'identity', retryAfterMs: 100 });
    c.advance(99);
    assert.equal(rl.take('id-a', 'acme/t1').allow, false, 'one ms early is still refused');
    c.advance(1);
    assert.equal(rl.take('id-a', 'acme/t1').allow, true, 'after retryAfterMs the call passes');
  });
  it('refused callers get staggered hints (a virtual queue), which decay as tokens refill', () => {
    const c = clock();
    const rl = new RateLimiter({
      perIdentity: { ratePerSec: 1e6, burst: 1e6 },
      perTenant: { ratePerSec: 10, burst: 1 },
      now: c.now,
    });
    assert.equal(rl.take('a', 'acme/t').allow, true);
    const hints = Array.from({ length: 4 }, () => {
      const d = rl.take('a', 'acme/t');
      return d.allow ? 0 : d.retryAfterMs;
    });
    assert.deepEqual(hints, [100, 200, 300, 400], 'each refused caller is told to come after the previous');
    c.advance(100);
    assert.equal(rl.take('a', 'acme/t').allow, true, 'the first caller, back on time, is served');
    c.advance(1000);
    const d = rl.take('x', 'acme/t');
    assert.equal(d.allow, true, 'after the promised tokens have refilled, a call passes');
    const e = rl.take('x', 'acme/t');
    assert.deepEqual(e, { allow: false, scope: 'tenant', retryAfterMs: 100 }, 'promises decayed');
  });
  it('a noisy tenant is limited while another tenant and identity are not', () => {
    const c = clock();
    const rl = new RateLimiter({
      perIdentity: { ratePerSec: 1e6, burst: 1e6 },
      perTenant: { ratePerSec: 100, burst: 10 },
      now: c.now,
    });
    let refused = 0;
    for (let i = 0; i < 1000; i++) if (!rl.take(`noisy-${i % 7}`, 'acme/noisy').allow) refused++;
    assert.equal(refused, 990, 'all but the burst of 10 refused');
    for (let i = 0; i < 10; i++) assert.equal(rl.take('quiet', 'acme/quiet').allow, true, `quiet call ${i}`);
  });
  it('a refused tenant check consumes no identity token', () => {
    const c = clock();
    const rl = new RateLimiter({
      perIdentity: { ratePerSec: 1, burst: 2 },
      perTenant: { ratePerSec: 1, burst: 1 },
      now: c.now,
    });
    assert.equal(rl.take('a', 't').allow, true);
    const d = rl.take('a', 't');
    assert.equal(d.allow, false);
    assert.equal(d.allow === false && d.scope, 'tenant');
    assert.equal(rl.take('a', 'other').allow, true, 'the identity still has its second token');
  });
  it('overrides apply per identity and per tenant', () => {
    const rl = new RateLimiter({
      perIdentity: { ratePerSec: 1, burst: 1 },
      identityOverrides: new Map([['batch-job', { ratePerSec: 1, burst: 100 }]]),
      now: clock().now,
    });
    for (let i = 0; i < 100; i++) assert.equal(rl.take('batch-job', undefined).allow, true);
    assert.equal(rl.take('batch-job', undefined).allow, false);
  });
  it('memory is bounded by maxBuckets (LRU)', () => {
    const rl = new RateLimiter({ maxBuckets: 100, now: clock().now });
    for (let i = 0; i < 10_000; i++) rl.take(`id-${i}`, `org/t${i}`);
    assert.ok(rl.size <= 100, `size ${rl.size} > 100`);
  });
  it('enforce throws RATE_LIMITED (gRPC RESOURCE_EXHAUSTED) with retryAfterMs', () => {
    const rl = new RateLimiter({ perIdentity: { ratePerSec: 2, burst: 1 }, now: clock().now });
    rl.enforce('x', undefined);
    assert.throws(
      () => rl.enforce('x', undefined),
      (e: unknown) =>
        e instanceof RateLimitedError &&
        e.code === 'RATE_LIMITED' &&
        e.status === 8 &&
        e.retryAfterMs === 500,
    );
  });
  it('rejects nonsense configuration', () => {
    assert.throws(() => new RateLimiter({ perIdentity: { ratePerSec: 0, burst: 1 } }), KbError);
    assert.throws(() => new RateLimiter({ perTenant: { ratePerSec: 1, burst: Number.NaN } }), KbError);
  });
});

describe('DailyQuota', () => {
  it('counts per UTC day and resets at midnight', () => {
    const c = clock(Date.UTC(2026, 0, 1, 23, 59, 0));
    const q = new DailyQuota({ opsPerDay: 3, now: c.now });
    q.consume('acme/t1');
    q.consume('acme/t1', 2);
    assert.throws(
      () => q.consume('acme/t1'),
      (e: unknown) =>
        e instanceof KbError && e.code === 'RATE_LIMITED' && /retry after 60000 ms/.test(e.safeMessage),
    );
    q.consume('acme/t2');
    c.advance(60_000);
    q.consume('acme/t1');
    assert.equal(q.used('acme/t1'), 1);
  });
});
