/**
 * Rate limits in the real daemon: a noisy tenant that spends its token bucket gets
 * RESOURCE_EXHAUSTED with a retry-after-ms trailer (and an audit record saying RATE_LIMITED),
 * while a quiet tenant of the same org keeps being served. Functional only: latency under load
 * is measured by bench/rate-limit-daemon-bench.ts, not asserted here.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode } from './e2e-helpers.ts';

let d: DaemonHandle;
let noisy: KeybrokerClient;
let quiet: KeybrokerClient;

before(async () => {
  d = await startDaemon({
    env: {
      // Per tenant: 20 calls of burst, refilled at 1/s; per identity high enough not to matter.
      KB_RATE_LIMIT_PER_TENANT_PER_SEC: '1',
      KB_RATE_LIMIT_PER_TENANT_BURST: '20',
      KB_RATE_LIMIT_PER_IDENTITY_PER_SEC: '10000',
      KB_RATE_LIMIT_PER_IDENTITY_BURST: '10000',
      // Every refusal recorded on its own here (floods of refusals: test/e2e/admission.test.ts).
      KB_RATE_LIMIT_REFUSED_BURST: '10000',
    },
  });
  await d.client('admin').admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
  noisy = d.client('service');
  quiet = d.client(await d.issueClient('spiffe://acme/beta/app'));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

test('a noisy tenant gets RESOURCE_EXHAUSTED with a retry hint; a quiet tenant is still served', async () => {
  const aad = Buffer.from('rl');
  const plaintext = Buffer.from('rate limit');
  const burst = await Promise.allSettled(
    Array.from({ length: 120 }, (_, i) =>
      noisy.crypto.unary('Encrypt', { plaintext, aad }, { requestId: `noisy-${i}` }),
    ),
  );
  const refused = burst.filter((r) => r.status === 'rejected').map((r) => r.reason as ServiceError);
  const served = burst.length - refused.length;
  assert.ok(served >= 1 && served <= 40, `noisy tenant served ${served} of 120 (bucket of 20 + refill)`);
  assert.ok(refused.length >= 80, `noisy tenant refused ${refused.length} of 120`);
  for (const e of refused) {
    assert.equal(e.code, GrpcCode.RESOURCE_EXHAUSTED, `refusal code: ${e.code} ${e.details}`);
    const hint = Number(e.metadata.get('retry-after-ms')[0]);
    assert.ok(Number.isFinite(hint) && hint > 0 && hint <= 60_000, `retry-after-ms trailer: ${hint}`);
  }
  // The quiet tenant, right after, and while the noisy one keeps hammering.
  const hammer = Promise.allSettled(
    Array.from({ length: 60 }, () => noisy.crypto.unary('Encrypt', { plaintext, aad })),
  );
  for (let i = 0; i < 15; i++) {
    const r = await quiet.crypto.unary<{ ciphertext: Buffer }>(
      'Encrypt',
      { plaintext, aad },
      { requestId: `quiet-${i}` },
    );
    assert.ok(r.ciphertext.length > plaintext.length, `quiet tenant call ${i} served`);
  }
  const h = await hammer;
  assert.ok(
    h.some((r) => r.status === 'rejected'),
    'the noisy tenant was still being refused while the quiet one was served',
  );
  // The refusal is audited, with its code.
  const recs = await queryAudit(join(d.dataDir, 'audit/audit.log'), { tenant: 'alpha' });
  const limited = recs.filter((r) => r.requestId.startsWith('noisy-') && r.code === 'RATE_LIMITED');
  assert.equal(limited.length, refused.length, 'one RATE_LIMITED record per refused call');
  assert.ok(
    limited.every((r) => r.result === 'denied' && /limit/.test(r.reason ?? '')),
    `RATE_LIMITED records are refusals with a reason: ${JSON.stringify(limited[0])}`,
  );
  // Once the hint has passed, the noisy tenant is served again.
  const wait = Math.max(...refused.map((e) => Number(e.metadata.get('retry-after-ms')[0])));
  await new Promise((r) => setTimeout(r, Math.min(wait, 2000) + 50));
  await noisy.crypto.unary('Encrypt', { plaintext, aad });
});
