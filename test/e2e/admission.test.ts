/**
 * Admission control in the real daemon: admin calls have their own budget (a tenant that used its
 * daily quota still lets its admin disable it, and admin reads spend none of the tenant's quota);
 * quota refusals carry a retry-after-ms trailer; a batch larger than a bucket's burst is refused as
 * INVALID_ARGUMENT (not a RESOURCE_EXHAUSTED a client would retry forever); a flood of denied calls
 * from one identity is throttled and summarized in the audit log, while another identity is served.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode } from './e2e-helpers.ts';

const QUOTA = 30;
const REFUSED_BURST = 20;
let d: DaemonHandle;
let admin: KeybrokerClient;
let svc: KeybrokerClient;
let beta: KeybrokerClient;
let gamma: KeybrokerClient;

before(async () => {
  d = await startDaemon({
    env: {
      KB_RATE_LIMIT_TENANT_OPS_PER_DAY: String(QUOTA),
      KB_RATE_LIMIT_PER_IDENTITY_PER_SEC: '1000',
      KB_RATE_LIMIT_PER_IDENTITY_BURST: '100',
      KB_RATE_LIMIT_REFUSED_PER_SEC: '2',
      KB_RATE_LIMIT_REFUSED_BURST: String(REFUSED_BURST),
      KB_RATE_LIMIT_REFUSAL_SUMMARY_MS: '1500',
    },
  });
  admin = d.client('admin');
  svc = d.client('service');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
  beta = d.client(await d.issueClient('spiffe://acme/beta/app'));
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'gamma' });
  gamma = d.client(await d.issueClient('spiffe://acme/gamma/app'));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const auditPath = () => join(d.dataDir, 'audit/audit.log');
const encrypt = (c: KeybrokerClient) => c.crypto.unary('Encrypt', { plaintext: Buffer.from('q') });

test('admin calls never spend the tenant quota; a tenant out of quota still lets its admin disable it', async () => {
  // Admin reads first: under the old admission each spent one of alpha's 30 operations.
  for (let i = 0; i < 10; i++) await admin.admin.unary('DescribeTenant', { org: 'acme', tenant: 'alpha' });
  let served = 0;
  let refusal: ServiceError | undefined;
  for (let i = 0; i < QUOTA + 5 && refusal === undefined; i++) {
    try {
      await encrypt(svc);
      served++;
    } catch (e) {
      refusal = e as ServiceError;
    }
  }
  assert.equal(served, QUOTA, 'the tenant service got its whole quota despite the admin reads');
  assert.ok(refusal !== undefined, 'the call after the quota is refused');
  assert.equal(refusal.code, GrpcCode.RESOURCE_EXHAUSTED, `${refusal.code} ${refusal.details}`);
  assert.match(refusal.details, /daily quota/);
  const hint = Number(refusal.metadata.get('retry-after-ms')[0]);
  const untilMidnight = 86_400_000 - (Date.now() % 86_400_000);
  assert.ok(
    Number.isFinite(hint) && hint > 0 && Math.abs(hint - untilMidnight) < 60_000,
    `daily-quota refusal carries retry-after-ms until the next UTC day: ${hint} vs ${untilMidnight}`,
  );
  // The admin, named tenant alpha in every call, is not locked out by alpha's spent quota.
  await admin.admin.unary('SetTenantEnabled', { org: 'acme', tenant: 'alpha', enabled: false });
  const t = await admin.admin.unary<{ tenant: { enabled: boolean } }>('DescribeTenant', {
    org: 'acme',
    tenant: 'alpha',
  });
  assert.equal(t.tenant.enabled, false, 'alpha disabled by its admin');
  await admin.admin.unary('SetTenantEnabled', { org: 'acme', tenant: 'alpha', enabled: true });
});

test('a batch larger than the burst is refused as INVALID_ARGUMENT, not RESOURCE_EXHAUSTED', async () => {
  const items = Array.from({ length: 150 }, () => ({ plaintext: Buffer.from('x') }));
  try {
    await beta.crypto.unary('EncryptBatch', { items });
    assert.fail('a 150-item batch passed a 100-token identity bucket');
  } catch (e) {
    const err = e as ServiceError;
    assert.equal(err.code, GrpcCode.INVALID_ARGUMENT, `${err.code} ${err.details}`);
    assert.match(err.details, /burst/);
    assert.equal(err.metadata.get('retry-after-ms').length, 0, 'no retry hint for a call no retry can cure');
  }
});

test('200 denied calls from one identity: most throttled, few audit records; another identity unaffected', async () => {
  const floodUri = 'spiffe://acme/beta/flood';
  const flood = d.client(await d.issueClient(floodUri));
  const codes: Record<number, number> = {};
  for (let i = 0; i < 200; i++) {
    try {
      await flood.admin.unary('CreateOrg', { org: `x${i}` }, { requestId: `flood-${i}` });
      codes[0] = (codes[0] ?? 0) + 1;
    } catch (e) {
      const c = (e as ServiceError).code;
      codes[c] = (codes[c] ?? 0) + 1;
    }
    // Meanwhile, another identity is served, and its own refusal is an ordinary PERMISSION_DENIED.
    if (i % 50 === 0) {
      await encrypt(beta);
      await assert.rejects(beta.admin.unary('CreateOrg', { org: 'y' }), (e: ServiceError) => {
        assert.equal(e.code, GrpcCode.PERMISSION_DENIED, `other identity: ${e.code} ${e.details}`);
        return true;
      });
    }
  }
  assert.equal(codes[0], undefined, 'nothing was allowed');
  assert.ok((codes[GrpcCode.RESOURCE_EXHAUSTED] ?? 0) >= 150, `codes: ${JSON.stringify(codes)}`);
  assert.ok((codes[GrpcCode.PERMISSION_DENIED] ?? 0) >= REFUSED_BURST, `codes: ${JSON.stringify(codes)}`);
  // Summaries are written when their window ends.
  await new Promise((r) => setTimeout(r, 2500));
  const recs = await queryAudit(auditPath(), { identity: floodUri });
  const own = recs.filter((r) => r.requestId.startsWith('flood-'));
  const summaries = recs.filter((r) => /refused calls summarized/.test(r.reason ?? ''));
  assert.ok(own.length >= REFUSED_BURST && own.length <= REFUSED_BURST + 10, `own records: ${own.length}`);
  assert.ok(summaries.length >= 1 && summaries.length <= 5, `summary records: ${summaries.length}`);
  const summed = summaries.reduce((n, r) => n + Number(/^(\d+) refused/.exec(r.reason ?? '')?.[1]), 0);
  assert.equal(own.length + summed, 200, 'every refused call is either recorded or counted in a summary');
  assert.ok(
    own.some((r) => /summarized/.test(r.reason ?? '')),
    'the record that opens a summary window says so',
  );
  assert.ok(
    summaries.every((r) => r.result === 'denied' && r.rpc === 'keybroker.v1.Admin/CreateOrg'),
    `summary records: ${JSON.stringify(summaries[0])}`,
  );
  // The other identity's refusals were recorded one by one.
  const other = await queryAudit(auditPath(), {
    identity: 'spiffe://acme/beta/app',
    rpc: 'keybroker.v1.Admin/CreateOrg',
  });
  assert.equal(other.length, 4, 'the other identity: one record per refusal');
});

test('VerifyBatch without a version is charged items x limits.maxVerifyVersions; with one, items', async () => {
  await gamma.keys.unary('CreateKey', { keyId: 'sig', algorithm: 'KEY_ALGORITHM_ML_DSA_44' });
  const message = Buffer.from('m');
  const { signature } = await gamma.keys.unary<{ signature: Buffer }>('Sign', { keyId: 'sig', message });
  const items = Array.from({ length: 26 }, () => ({ message, signature }));
  // 26 items x 4 candidate versions = 104 tokens: more than the identity burst of 100.
  try {
    await gamma.keys.unary('VerifyBatch', { keyId: 'sig', items });
    assert.fail('26 items x 4 candidate versions passed a 100-token bucket');
  } catch (e) {
    const err = e as ServiceError;
    assert.equal(err.code, GrpcCode.INVALID_ARGUMENT, `${err.code} ${err.details}`);
    assert.match(err.details, /costs 104 tokens/);
  }
  // Naming the version: 26 tokens, served.
  const r = await gamma.keys.unary<{ results: { valid: boolean }[] }>('VerifyBatch', {
    keyId: 'sig',
    version: 1,
    items,
  });
  assert.equal(r.results.filter((x) => x.valid).length, 26);
});
