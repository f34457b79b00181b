/**
 * Admission control above its interfaces (the daemon-level behaviour is in admission.test.ts):
 * data plane vs control plane, separate admin budget, refusal summaries, open-stream slots, and
 * the retry hints (or their absence) of every refusal.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuditRecordInput, AuditSink } from '../../daemon/src/audit/audit-sink.ts';
import { Admission, isDataPlane } from '../../daemon/src/api/admission.ts';
import { RefusalSummary } from '../../daemon/src/api/refusal-summary.ts';
import { DEFAULT_CONFIG, type Config } from '../../daemon/src/config/config-schema.ts';
import { KbError } from '../../daemon/src/errors.ts';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import type { CallerIdentity } from '../../daemon/src/policy/authorizer.ts';
import { DailyQuota } from '../../daemon/src/policy/daily-quota.ts';
import { RateLimitedError, RateLimiter } from '../../daemon/src/policy/rate-limiter.ts';

function memorySink(): AuditSink & { records: AuditRecordInput[] } {
  const records: AuditRecordInput[] = [];
  return {
    records,
    append: (r) => (records.push(r), Promise.resolve({ seq: records.length, hash: '' })),
    head: () => ({ seq: 0, hash: '' }),
    health: () => ({ ok: true }),
    close: () => Promise.resolve(),
  };
}

function config(rate: Partial<Config['rateLimit']>, limits: Partial<Config['limits']> = {}): Config {
  return {
    ...DEFAULT_CONFIG,
    rateLimit: { ...DEFAULT_CONFIG.rateLimit, ...rate },
    limits: { ...DEFAULT_CONFIG.limits, ...limits },
  };
}

const who = (uri: string): CallerIdentity => ({
  uri,
  org: 'acme' as OrgId,
  service: 'x',
  roles: [],
});
const alpha = { org: 'acme' as OrgId, tenant: 'alpha' as TenantId };

/** The error `fn` throws (fails when it does not throw). */
function thrown(fn: () => void): KbError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KbError, `a KbError: ${String(e)}`);
    return e;
  }
  assert.fail('expected a refusal');
}

test('data plane vs control plane, by RPC', () => {
  const cases: [string, boolean][] = [
    ['keybroker.v1.Crypto/Encrypt', true],
    ['keybroker.v1.Crypto/EncryptStream', true],
    ['keybroker.v1.Keys/Sign', true],
    ['keybroker.v1.Keys/VerifyBatch', true],
    ['keybroker.v1.Keys/OpenBox', true],
    ['keybroker.v1.Keys/GetJwks', true],
    ['keybroker.v1.BlindIndexes/ComputeBlindIndexBatch', true],
    ['keybroker.v1.Secrets/GetSecret', true],
    ['keybroker.v1.Admin/CreateBlindIndex', false],
    ['keybroker.v1.Keys/CreateKey', false],
    ['keybroker.v1.Keys/RotateKey', false],
    ['keybroker.v1.Keys/CreateImportJob', false],
    ['keybroker.v1.Keys/ImportKey', false],
    ['keybroker.v1.Admin/SetTenantEnabled', false],
    ['keybroker.v1.Admin/DescribeTenant', false],
    ['keybroker.v1.Approvals/ApproveRequest', false],
    ['keybroker.v1.Policy/GetPolicy', false],
  ];
  for (const [rpc, data] of cases) assert.equal(isDataPlane(rpc), data, rpc);
});

test('admin calls spend neither the tenant bucket nor its quota; they have their own budget', () => {
  const a = new Admission(
    config({ perTenantBurst: 2, perTenantPerSec: 1, tenantOpsPerDay: 3, adminBurst: 3 }),
  );
  const svc = who('spiffe://acme/alpha/app');
  const root = who('spiffe://acme/admin/root');
  for (let i = 0; i < 2; i++) a.afterAuthorization('keybroker.v1.Crypto/Encrypt', alpha, 1);
  const limited = thrown(() => a.afterAuthorization('keybroker.v1.Crypto/Encrypt', alpha, 1));
  assert.equal(limited.code, 'RATE_LIMITED');
  assert.match(limited.safeMessage, /tenant limit/);
  // The admin names tenant alpha: nothing of alpha's is spent or checked.
  for (let i = 0; i < 3; i++) {
    a.beforeAuthorization(root, 'keybroker.v1.Admin/SetTenantEnabled', 1);
    a.afterAuthorization('keybroker.v1.Admin/SetTenantEnabled', alpha, 1);
  }
  const adminLimited = thrown(() => a.beforeAuthorization(root, 'keybroker.v1.Admin/DescribeTenant', 1));
  assert.match(adminLimited.safeMessage, /admin limit/);
  // The admin budget is per identity and apart from the data-plane one.
  a.beforeAuthorization(root, 'keybroker.v1.Crypto/Encrypt', 1);
  a.beforeAuthorization(svc, 'keybroker.v1.Admin/DescribeTenant', 1);
});

test('a call costing more than a burst is TOO_LARGE (no retry hint), not RATE_LIMITED', () => {
  const rl = new RateLimiter({ perIdentity: { ratePerSec: 10, burst: 100 } });
  const e = thrown(() => rl.enforce('a', undefined, 101));
  assert.equal(e.code, 'TOO_LARGE');
  assert.equal(e.status, 3, 'INVALID_ARGUMENT');
  assert.equal((e as { retryAfterMs?: number }).retryAfterMs, undefined);
  rl.enforce('a', undefined, 100); // exactly the burst passes
  const again = thrown(() => rl.enforce('a', undefined, 1));
  assert.ok(again instanceof RateLimitedError && again.retryAfterMs > 0, 'an ordinary refusal has its hint');
});

test('a daily-quota refusal carries the time until the next UTC day as its retry hint', () => {
  const now = Date.UTC(2026, 0, 1, 23, 0, 0);
  const q = new DailyQuota({ opsPerDay: 2, now: () => now });
  q.consume('acme/alpha', 2);
  const e = thrown(() => q.consume('acme/alpha'));
  assert.ok(e instanceof RateLimitedError, 'RateLimitedError');
  assert.equal(e.retryAfterMs, 3_600_000);
  assert.match(e.safeMessage, /daily quota of 2/);
});

test('refusals: recorded one by one up to the burst, then throttled and summarized per caller', async () => {
  const sink = memorySink();
  const s = new RefusalSummary({ audit: sink, bucket: { ratePerSec: 0.001, burst: 5 }, intervalMs: 60_000 });
  const flood = 'spiffe://acme/alpha/flood';
  let recorded = 0;
  let throttled = 0;
  let opened = 0;
  for (let i = 0; i < 200; i++) {
    try {
      s.throttle(flood);
    } catch (e) {
      assert.ok(e instanceof RateLimitedError && e.retryAfterMs > 0, 'throttled with a retry hint');
      throttled++;
      if (s.refused(flood, 'keybroker.v1.Admin/CreateOrg', 'RATE_LIMITED').record) recorded++;
      continue;
    }
    const v = s.refused(flood, 'keybroker.v1.Admin/CreateOrg', 'PERMISSION_DENIED');
    if (v.record) recorded++;
    if (v.note !== undefined) opened++;
  }
  assert.equal(recorded, 6, 'the burst, then the one that opens the window');
  assert.equal(opened, 1, 'one record says a summary window opened');
  assert.equal(throttled, 194, 'every later call is refused up front');
  // Another caller is untouched; so is an unauthenticated peer, keyed by its address.
  assert.deepEqual(s.refused('spiffe://acme/beta/app', 'keybroker.v1.Admin/CreateOrg', 'PERMISSION_DENIED'), {
    record: true,
  });
  s.throttle('spiffe://acme/beta/app');
  assert.equal(s.refused('peer:10.0.0.9', 'keybroker.v1.Crypto/Encrypt', 'UNAUTHENTICATED').record, true);
  await s.flush();
  assert.equal(sink.records.length, 1, 'one summary record');
  const r = sink.records[0] as AuditRecordInput;
  assert.equal(r.identity, flood);
  assert.equal(r.result, 'denied');
  assert.equal(r.rpc, 'keybroker.v1.Admin/CreateOrg');
  assert.match(r.reason ?? '', /^194 refused calls summarized since .*RATE_LIMITED=194/);
});

test('open streams per identity: bounded, released once, others unaffected', () => {
  const a = new Admission(config({}, { maxStreamsPerIdentity: 2 }));
  const x = who('spiffe://acme/alpha/x');
  const r1 = a.openStream(x);
  a.openStream(x);
  const e = thrown(() => a.openStream(x));
  assert.ok(e instanceof RateLimitedError && e.retryAfterMs > 0);
  assert.match(e.safeMessage, /2 open streams per identity/);
  a.openStream(who('spiffe://acme/alpha/y'));
  r1();
  r1(); // a second release gives nothing back twice
  a.openStream(x);
  thrown(() => a.openStream(x));
});
