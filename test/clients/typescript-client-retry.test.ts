/**
 * Retries of the client library against a real daemon with a tiny per-tenant rate limit:
 * RESOURCE_EXHAUSTED with a retry-after-ms trailer is retried no sooner than the trailer says,
 * attempts are bounded, and a caller that allows one attempt sees the refusal.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { CallObserver, KeybrokerClient } from '../../clients/typescript/src/keybroker-client.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';
import { libraryClient } from './client-fixtures.ts';

let d: DaemonHandle;
let c: KeybrokerClient;

before(async () => {
  d = await startDaemon({
    env: {
      // 2 calls of burst per tenant, refilled at 5/s.
      KB_RATE_LIMIT_PER_TENANT_PER_SEC: '5',
      KB_RATE_LIMIT_PER_TENANT_BURST: '2',
      KB_RATE_LIMIT_PER_IDENTITY_PER_SEC: '10000',
      KB_RATE_LIMIT_PER_IDENTITY_BURST: '10000',
      KB_RATE_LIMIT_REFUSED_BURST: '10000',
    },
  });
  c = libraryClient(d, 'service', { retry: { maxAttempts: 20, baseDelayMs: 1, maxDelayMs: 50 } });
});
after(async () => {
  c.close();
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

type Event = Parameters<CallObserver>[0] & { at: number };

test('RESOURCE_EXHAUSTED with retry-after-ms: retried after at least the hinted wait, then served', async () => {
  const events: Event[] = [];
  c.observer = (e) => events.push({ ...e, at: Date.now() });
  const n = 8;
  const results = await Promise.all(
    Array.from({ length: n }, (_v, i) =>
      c.crypto.encrypt({ plaintext: Buffer.from(`r${i}`) }, { requestId: `r${i}` }),
    ),
  );
  assert.equal(results.length, n, 'every call served in the end');
  const refused = events.filter((e) => e.code === status.RESOURCE_EXHAUSTED);
  assert.ok(
    refused.length >= n - 3,
    `the burst of 2 refused most calls at first: ${refused.length} refusals`,
  );
  for (const e of refused) {
    assert.ok(
      e.retryAfterMs !== undefined && e.retryAfterMs > 0,
      `refusal carries retry-after-ms: ${e.retryAfterMs}`,
    );
    assert.ok(
      (e.waitMs ?? 0) >= (e.retryAfterMs ?? 0),
      `waited ${e.waitMs} ms >= retry-after-ms ${e.retryAfterMs}`,
    );
  }
  // One call at a time: the attempt after a refusal comes no sooner than the hint.
  events.length = 0;
  for (let i = 0; i < 4; i++) await c.crypto.encrypt({ plaintext: Buffer.from(`s${i}`) });
  let checked = 0;
  for (const [i, e] of events.entries()) {
    const next = events[i + 1];
    if (e.code !== status.RESOURCE_EXHAUSTED || next === undefined) continue;
    assert.ok(
      next.at - e.at >= (e.retryAfterMs ?? 0) - 1,
      `next attempt after ${next.at - e.at} ms, hint ${e.retryAfterMs}`,
    );
    checked++;
  }
  assert.ok(checked >= 1, `sequential calls were refused and retried (${checked} checked)`);
  c.observer = undefined;
});

test('attempts are bounded: maxAttempts 1 surfaces the refusal with its trailer', async () => {
  // Drain the bucket, then one call that may not retry.
  await Promise.allSettled(
    Array.from({ length: 10 }, () =>
      c.crypto.encrypt({ plaintext: Buffer.from('x') }, { retry: { maxAttempts: 1 } }),
    ),
  );
  const err = await c.crypto.encrypt({ plaintext: Buffer.from('x') }, { retry: { maxAttempts: 1 } }).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  assert.ok(err !== undefined, 'the call was refused');
  assert.equal(err.code, status.RESOURCE_EXHAUSTED, `code ${err.code} ${err.details}`);
  assert.ok(Number(err.metadata.get('retry-after-ms')[0]) > 0, 'retry-after-ms trailer on the refusal');
});
