/**
 * Audit before effect (review M2), at the call gate with the real Admin, Approvals and Policy
 * services, the real PolicyEngine and a real ApprovalStore (SQLite file), driven through
 * in-memory gRPC call objects and a controllable audit sink:
 * - a mutating RPC writes an `intent` record before its handler runs and refuses to act when it
 *   cannot (sink unhealthy, or the append fails): no effect;
 * - a mutating handler is never abandoned on the deadline: the outcome record says what really
 *   happened (E4), and a call whose deadline passed before it started does nothing;
 * - an approval step whose record cannot be written is undone (E5): the approval stays pending.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { adminService } from '../../daemon/src/api/admin-service.ts';
import { approvalsService } from '../../daemon/src/api/approvals-service.ts';
import type { Governance } from '../../daemon/src/api/approvals-service.ts';
import { CallGate } from '../../daemon/src/api/call-gate.ts';
import type { AuditPosition, AuditRecordInput, AuditSink } from '../../daemon/src/audit/audit-sink.ts';
import type { KeyBrokerApi } from '../../daemon/src/keys/key-broker-api.ts';
import { createLoggers } from '../../daemon/src/obs/logger.ts';
import { Metrics } from '../../daemon/src/obs/metrics.ts';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import { DEFAULT_POLICY_TEXT, defaultPolicy } from '../../daemon/src/policy/default-policy.ts';
import { PolicyEngine } from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { createDevCa } from '../../daemon/src/tls/dev-pki.ts';

const GRPC_OK = 0;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_FAILED_PRECONDITION = 9;
const GRPC_UNAVAILABLE = 14;

/** A sink whose health and appends the test controls; `failAfter` fails appends after n more. */
class TestSink implements AuditSink {
  records: AuditRecordInput[] = [];
  unhealthy = false;
  failAfter = Infinity;
  append(r: AuditRecordInput): Promise<AuditPosition> {
    if (this.unhealthy || this.failAfter <= 0) return Promise.reject(new Error('disk full'));
    this.failAfter -= 1;
    this.records.push(r);
    return Promise.resolve({ seq: this.records.length, hash: '' });
  }
  head(): AuditPosition {
    return { seq: this.records.length, hash: '' };
  }
  health() {
    return this.unhealthy ? { ok: false, reason: 'disk full' } : { ok: true };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const KEY = {
  level: 'tenant',
  primary: 1,
  versions: [],
  policy: { rotationPeriodSeconds: 0, usageLimit: 0, minEncryptVersion: 1, minDecryptVersion: 1 },
};

/** The broker operations these RPCs reach; each records that it ran (its effect). */
class EffectBroker {
  effects: string[] = [];
  destroyMs = 0;
  destroyFinishedAt = 0;
  async createTenant(org: string, tenant: string): Promise<object> {
    this.effects.push(`createTenant ${org}/${tenant}`);
    return { org, tenant, enabled: true, createdAt: '', key: KEY };
  }
  async describeOrg(org: string): Promise<object> {
    return { org, enabled: true, createdAt: '', key: KEY };
  }
  async destroyTenant(ref: { org: string; tenant: string }): Promise<object> {
    await new Promise((r) => setTimeout(r, this.destroyMs));
    this.effects.push(`destroyTenant ${ref.org}/${ref.tenant}`);
    this.destroyFinishedAt = Date.now();
    return { body: '{}', signatureAlgorithm: 'ecdsa-p256-sha256', signature: '', publicKeyPem: '' };
  }
  async destroyCustomer(ref: { org: string; tenant: string }, customer: string): Promise<object> {
    this.effects.push(`destroyCustomer ${ref.org}/${ref.tenant}/${customer}`);
    return { body: '{}', signatureAlgorithm: 'ecdsa-p256-sha256', signature: '', publicKeyPem: '' };
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kb-audit-effect-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Real client certificates (DER) of the two admins: the gate parses the peer certificate. */
const certs = new Map<string, Buffer>();
before(async () => {
  const ca = await createDevCa('audit-effect test CA', 'ecdsa-p256');
  for (const who of ['alice', 'bob']) {
    const p = await ca.issue({ commonName: who, uris: [`spiffe://acme/admin/${who}`], usage: 'client' });
    certs.set(who, Buffer.from(new X509Certificate(p.certPem).raw));
  }
});

type Handler = (call: object, cb: (err: { code: number } | null, res?: unknown) => void) => void;

function setup(name: string) {
  const sink = new TestSink();
  const broker = new EffectBroker();
  const policy = new PolicyStore(defaultPolicy(), DEFAULT_POLICY_TEXT);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const gate = new CallGate({
    authorizer: () => new PolicyEngine(policy),
    audit: sink,
    log: createLoggers('info', quiet).log,
    requestLog: () => undefined,
    metrics: new Metrics({
      hsmSessions: () => undefined,
      brokerStats: () => undefined,
      ready: () => true,
      degraded: () => false,
    }),
    defaultDeadlineMs: 30_000,
    shuttingDown: () => false,
  });
  const approvals = new ApprovalStore({ path: join(dir, `${name}.db`) });
  const g: Governance = {
    approvals,
    policy,
    fipsMode: () => false,
    twoPersonRule: () => true,
    persistPolicy: () => undefined,
  };
  const apr = approvalsService(gate, g) as Record<string, Handler>;
  const adm = adminService(gate, () => broker as unknown as KeyBrokerApi, g) as Record<string, Handler>;
  /** One call as `who` (an admin of org acme) with a deadline `deadlineMs` from now. */
  const run = (fn: Handler | undefined, who: string, request: object, deadlineMs = 30_000) =>
    new Promise<{ code: number; res: Record<string, unknown> | undefined; ms: number }>((resolve) => {
      const t0 = Date.now();
      const call = {
        request,
        metadata: { get: () => [] },
        getDeadline: () => new Date(t0 + deadlineMs),
        on() {},
        removeListener() {},
        sendMetadata() {},
        getAuthContext: () => ({
          sslPeerCertificate: {
            raw: certs.get(who),
            subjectaltname: `URI:spiffe://acme/admin/${who}`,
            ext_key_usage: ['1.3.6.1.5.5.7.3.2'],
            valid_from: 'Jan  1 00:00:00 2020 GMT',
            valid_to: 'Jan  1 00:00:00 2099 GMT',
          },
        }),
      };
      assert.ok(fn, 'handler exists');
      fn(call, (err, res) =>
        resolve({ code: err?.code ?? GRPC_OK, res: res as Record<string, unknown>, ms: Date.now() - t0 }),
      );
    });
  /** An approval for `op` requested by alice and approved by bob, both audited. */
  const approved = async (operation: string, extra: object) => {
    const req = await run(apr.RequestApproval, 'alice', { operation, org: 'acme', ...extra });
    assert.equal(req.code, GRPC_OK, 'RequestApproval');
    const id = (req.res?.approval as { approvalId: string }).approvalId;
    const ok = await run(apr.ApproveRequest, 'bob', { approvalId: id });
    assert.equal(ok.code, GRPC_OK, 'ApproveRequest');
    return id;
  };
  const results = (rpc: string) =>
    sink.records.filter((r) => r.rpc.endsWith(`/${rpc}`)).map((r) => r.result + (r.code ? `:${r.code}` : ''));
  return { sink, broker, approvals, apr, adm, run, approved, results };
}

describe('mutating RPCs: intent record first, no effect without it', () => {
  const cases = [
    { name: 'sink unhealthy (full disk, /readyz 503)', arrange: (s: TestSink) => (s.unhealthy = true) },
    { name: 'sink healthy but the intent append fails', arrange: (s: TestSink) => (s.failAfter = 0) },
  ];
  for (const c of cases) {
    it(`CreateTenant: ${c.name} -> UNAVAILABLE, tenant not created`, async () => {
      const t = setup(`create-${cases.indexOf(c)}`);
      c.arrange(t.sink);
      const r = await t.run(t.adm.CreateTenant, 'alice', { org: 'acme', tenant: 't1' });
      assert.equal(r.code, GRPC_UNAVAILABLE);
      assert.deepEqual(t.broker.effects, [], 'no effect');
      assert.deepEqual(t.sink.records, [], 'nothing on record, nothing done');
    });

    it(`approved DestroyCustomer: ${c.name} -> UNAVAILABLE, customer kept, approval still usable`, async () => {
      const t = setup(`destroy-customer-${cases.indexOf(c)}`);
      const id = await t.approved('APPROVAL_OPERATION_DESTROY_CUSTOMER', { tenant: 't1', customer: 'c1' });
      c.arrange(t.sink);
      const req = { org: 'acme', tenant: 't1', customer: 'c1', approvalId: id };
      const r = await t.run(t.adm.DestroyCustomer, 'alice', req);
      assert.equal(r.code, GRPC_UNAVAILABLE);
      assert.deepEqual(t.broker.effects, [], 'no effect');
      assert.equal(t.approvals.list('acme')[0]?.status, 'approved', 'the approval was not consumed');
      // Once the log is healthy again the same approval does the operation, with both records.
      t.sink.unhealthy = false;
      t.sink.failAfter = Infinity;
      const again = await t.run(t.adm.DestroyCustomer, 'alice', req);
      assert.equal(again.code, GRPC_OK);
      assert.deepEqual(t.broker.effects, ['destroyCustomer acme/t1/c1']);
      assert.deepEqual(t.results('DestroyCustomer'), ['intent', 'ok']);
    });
  }

  it('every mutating call leaves intent then outcome with the same request id; reads only their outcome', async () => {
    const t = setup('pairs');
    await t.run(t.adm.CreateTenant, 'alice', { org: 'acme', tenant: 't2' });
    await t.run(t.adm.DescribeOrg, 'alice', { org: 'acme' });
    const [intent, outcome, read] = t.sink.records;
    assert.equal(intent?.result, 'intent');
    assert.equal(intent?.rpc, 'keybroker.v1.Admin/CreateTenant');
    assert.equal(intent?.tenant, 't2');
    assert.equal(outcome?.result, 'ok');
    assert.equal(outcome?.requestId, intent?.requestId, 'the outcome names the intent it completes');
    assert.equal(read?.rpc, 'keybroker.v1.Admin/DescribeOrg', 'a read has no intent record');
    assert.equal(read?.result, 'ok');
    assert.equal(t.sink.records.length, 3);
  });
});

describe('deadlines never leave a record that disagrees with what happened (E4)', () => {
  it('approved DestroyTenant that outlasts a 50 ms deadline: intent, then ok after it finished', async () => {
    const t = setup('deadline-late');
    const id = await t.approved('APPROVAL_OPERATION_DESTROY_TENANT', { tenant: 't1' });
    t.broker.destroyMs = 300;
    const r = await t.run(t.adm.DestroyTenant, 'alice', { org: 'acme', tenant: 't1', approvalId: id }, 50);
    assert.deepEqual(t.broker.effects, ['destroyTenant acme/t1'], 'the destroy ran to completion');
    assert.ok(r.ms >= 300, `the gate answered only once the destroy finished (${r.ms} ms)`);
    assert.deepEqual(t.results('DestroyTenant'), ['intent', 'ok'], 'the records say it was done');
    const outcome = t.sink.records.at(-1);
    assert.match(outcome?.reason ?? '', /finished after the caller gave up/);
    assert.equal(t.approvals.list('acme')[0]?.status, 'executed');
    assert.ok(
      !t.sink.records.some((x) => x.code === 'DEADLINE_EXCEEDED'),
      'no DEADLINE_EXCEEDED record for a destroy that completed',
    );
  });

  it('a deadline already past when the call starts: refused, nothing done, approval unused', async () => {
    const t = setup('deadline-past');
    const id = await t.approved('APPROVAL_OPERATION_DESTROY_TENANT', { tenant: 't1' });
    const r = await t.run(t.adm.DestroyTenant, 'alice', { org: 'acme', tenant: 't1', approvalId: id }, -5);
    assert.equal(r.code, GRPC_DEADLINE_EXCEEDED);
    assert.deepEqual(t.broker.effects, []);
    assert.deepEqual(t.results('DestroyTenant'), ['error:DEADLINE_EXCEEDED'], 'no intent: it never started');
    assert.equal(t.approvals.list('acme')[0]?.status, 'approved');
  });
});

describe('approval steps are not taken without their records (E5)', () => {
  it('ApproveRequest while the sink fails: UNAVAILABLE, still pending; the destroy is refused later', async () => {
    const t = setup('approve-failing');
    const req = await t.run(t.apr.RequestApproval, 'alice', {
      operation: 'APPROVAL_OPERATION_DESTROY_TENANT',
      org: 'acme',
      tenant: 't1',
    });
    const id = (req.res?.approval as { approvalId: string }).approvalId;
    t.sink.unhealthy = true;
    const ok = await t.run(t.apr.ApproveRequest, 'bob', { approvalId: id });
    assert.equal(ok.code, GRPC_UNAVAILABLE);
    t.sink.unhealthy = false;
    const a = t.approvals.list('acme')[0];
    assert.equal(a?.status, 'pending');
    assert.equal(a?.approver, undefined);
    const ex = await t.run(t.adm.DestroyTenant, 'alice', { org: 'acme', tenant: 't1', approvalId: id });
    assert.equal(ex.code, GRPC_FAILED_PRECONDITION, 'APPROVAL_REQUIRED: not approved');
    assert.deepEqual(t.broker.effects, []);
  });

  it('ApproveRequest whose outcome record fails after its intent: the approval is put back to pending', async () => {
    const t = setup('approve-outcome-fails');
    const req = await t.run(t.apr.RequestApproval, 'alice', {
      operation: 'APPROVAL_OPERATION_DESTROY_TENANT',
      org: 'acme',
      tenant: 't1',
    });
    const id = (req.res?.approval as { approvalId: string }).approvalId;
    t.sink.failAfter = 1; // the intent is written, the outcome is not
    const ok = await t.run(t.apr.ApproveRequest, 'bob', { approvalId: id });
    assert.equal(ok.code, GRPC_UNAVAILABLE);
    assert.deepEqual(t.results('ApproveRequest'), ['intent']);
    assert.equal(t.approvals.list('acme')[0]?.status, 'pending', 'undone: nobody can prove it happened');
  });

  it('RequestApproval whose outcome record fails: no approval is left behind', async () => {
    const t = setup('request-outcome-fails');
    t.sink.failAfter = 1;
    const r = await t.run(t.apr.RequestApproval, 'alice', {
      operation: 'APPROVAL_OPERATION_DESTROY_TENANT',
      org: 'acme',
      tenant: 't1',
    });
    assert.equal(r.code, GRPC_UNAVAILABLE);
    assert.deepEqual(t.approvals.list('acme'), []);
  });
});
