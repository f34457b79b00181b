// Two-person rule on a real SQLite file with a real audit file: request -> approve -> execute.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import type { AuditSink } from '../../daemon/src/audit/audit-sink.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import type { ApprovalTarget } from '../../daemon/src/policy/approval.ts';
import { caller } from './policy-fixtures.ts';

const alice = caller('spiffe://acme/admin/alice', ['admin']);
const bob = caller('spiffe://acme/admin/bob', ['admin']);
const olga = caller('spiffe://acme/admin/olga', ['operator']);
const eve = caller('spiffe://globex/admin/eve', ['admin']);
const tenantAdmin = caller('spiffe://acme/t1/ops', ['admin']);
const T1: ApprovalTarget = { org: 'acme', tenant: 't1' };
const WINDOW = 60_000;

function rejectsWith(p: Promise<unknown>, code: string, msg?: RegExp) {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KbError, `want KbError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `want ${code}, got ${e.code}: ${e.safeMessage}`);
    if (msg) assert.match(e.safeMessage, msg);
    return true;
  });
}

describe('two-person rule', () => {
  let dir: string;
  let audit: FileAuditSink;
  let store: ApprovalStore;
  let t = 1_800_000_000_000;
  const now = () => t;
  const auditPath = () => join(dir, 'audit.log');
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kb-approvals-'));
    audit = await FileAuditSink.open({ path: auditPath(), now });
    store = new ApprovalStore({ path: join(dir, 'approvals.db'), windowMs: WINDOW, audit, now });
  });
  after(async () => {
    store.close();
    await audit.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('destroy tenant needs two distinct admins; each step is audited', async () => {
    const req = await store.request(alice, 'destroy-tenant', T1, 'rq-1');
    assert.equal(req.approval.status, 'pending');
    await rejectsWith(
      store.execute(alice, req.approval.id, 'destroy-tenant', T1, 'rq-2'),
      'APPROVAL_REQUIRED',
      /not yet approved/,
    );
    const ok = await store.approve(bob, req.approval.id, 'rq-3');
    assert.equal(ok.approval.approver, bob.uri);
    const ex = await store.execute(alice, req.approval.id, 'destroy-tenant', T1, 'rq-4');
    assert.equal(ex.approval.status, 'executed');
    assert.ok(ex.position && ex.position.seq > 0, 'execute returns its audit position');
    const recs = await queryAudit(auditPath(), {});
    const steps = recs
      .filter((r) => r.reason?.includes(req.approval.id))
      .map((r) => `${r.rpc.split('/')[1]}:${r.result}:${r.identity.split('/').pop()}`);
    assert.deepEqual(steps, [
      'RequestApproval:ok:alice',
      'ExecuteApproval:denied:alice',
      'ApproveRequest:ok:bob',
      'ExecuteApproval:ok:alice',
    ]);
  });

  it('self-approval is refused (and audited as denied)', async () => {
    const { approval } = await store.request(alice, 'destroy-customer', { ...T1, customer: 'c1' }, 'rq-10');
    await rejectsWith(store.approve(alice, approval.id, 'rq-11'), 'PERMISSION_DENIED', /self-approval/);
    const denied = await queryAudit(auditPath(), { result: 'denied', identity: alice.uri });
    assert.ok(
      denied.some((r) => r.requestId === 'rq-11' && r.code === 'PERMISSION_DENIED'),
      'denied record for rq-11',
    );
    await rejectsWith(
      store.execute(alice, approval.id, 'destroy-customer', { ...T1, customer: 'c1' }, 'rq-12'),
      'APPROVAL_REQUIRED',
    );
  });

  it('an approval after the window is refused; so is an execution after it', async () => {
    const a = await store.request(alice, 'rotate-oek', { org: 'acme' }, 'rq-20');
    t += WINDOW;
    await rejectsWith(store.approve(bob, a.approval.id, 'rq-21'), 'FAILED_PRECONDITION', /expired/);
    const b = await store.request(alice, 'rotate-oek', { org: 'acme' }, 'rq-22');
    await store.approve(bob, b.approval.id, 'rq-23');
    t += WINDOW; // exactly at the end of the window counts as expired
    await rejectsWith(
      store.execute(alice, b.approval.id, 'rotate-oek', { org: 'acme' }, 'rq-24'),
      'APPROVAL_REQUIRED',
      /expired/,
    );
  });

  it('an approval is executed once only', async () => {
    const { approval } = await store.request(alice, 'rotate-oek', { org: 'acme' }, 'rq-30');
    await store.approve(bob, approval.id, 'rq-31');
    await store.execute(alice, approval.id, 'rotate-oek', { org: 'acme' }, 'rq-32');
    await rejectsWith(
      store.execute(alice, approval.id, 'rotate-oek', { org: 'acme' }, 'rq-33'),
      'APPROVAL_REQUIRED',
      /executed/,
    );
  });

  it('a released approval (its operation failed) can be executed again, once, within its window', async () => {
    const target: ApprovalTarget = { org: 'acme', tenant: 't2' };
    const { approval } = await store.request(alice, 'destroy-tenant', target, 'rq-40');
    await store.approve(bob, approval.id, 'rq-41');
    // Releasing one that was never executed does nothing.
    await store.release(alice, approval.id, 'rq-42', 'UNAVAILABLE');
    assert.equal(store.list('acme', 'approved').filter((a) => a.id === approval.id).length, 1);
    await store.execute(alice, approval.id, 'destroy-tenant', target, 'rq-43');
    await store.release(alice, approval.id, 'rq-44', 'UNAVAILABLE');
    const back = store.list('acme').find((a) => a.id === approval.id);
    assert.equal(back?.status, 'approved');
    assert.equal(back?.executedAt, undefined);
    assert.equal(back?.expiresAt, approval.expiresAt, 'the window is not extended');
    const released = await queryAudit(auditPath(), { rpc: 'keybroker.v1.Approvals/ReleaseApproval' });
    assert.equal(released.length, 1);
    assert.match(released[0]?.reason ?? '', /released approval .*destroy-tenant failed \(UNAVAILABLE\)/);
    await store.execute(alice, approval.id, 'destroy-tenant', target, 'rq-45');
    await rejectsWith(
      store.execute(alice, approval.id, 'destroy-tenant', target, 'rq-46'),
      'APPROVAL_REQUIRED',
      /executed/,
    );
    // Released after its window: still refused as expired.
    await store.release(alice, approval.id, 'rq-47', 'INTERNAL');
    t += WINDOW;
    await rejectsWith(
      store.execute(alice, approval.id, 'destroy-tenant', target, 'rq-48'),
      'APPROVAL_REQUIRED',
      /expired/,
    );
  });

  it('only org admins take part: operator, tenant-scoped admin and another org are refused', async () => {
    await rejectsWith(store.request(olga, 'destroy-tenant', T1, 'rq-40'), 'PERMISSION_DENIED');
    await rejectsWith(store.request(tenantAdmin, 'destroy-tenant', T1, 'rq-41'), 'PERMISSION_DENIED');
    await rejectsWith(
      store.request(alice, 'destroy-tenant', { org: 'globex', tenant: 't1' }, 'rq-42'),
      'PERMISSION_DENIED',
    );
    const { approval } = await store.request(alice, 'destroy-tenant', T1, 'rq-43');
    await rejectsWith(store.approve(olga, approval.id, 'rq-44'), 'PERMISSION_DENIED');
    await rejectsWith(store.approve(eve, approval.id, 'rq-45'), 'NOT_FOUND');
    await rejectsWith(store.approve(bob, 'apr-00000000000000000000', 'rq-46'), 'NOT_FOUND');
  });

  it('execution must name exactly the approved operation, and only the requester executes', async () => {
    const { approval } = await store.request(alice, 'destroy-tenant', T1, 'rq-50');
    await store.approve(bob, approval.id, 'rq-51');
    await rejectsWith(
      store.execute(alice, approval.id, 'destroy-tenant', { org: 'acme', tenant: 't2' }, 'rq-52'),
      'APPROVAL_REQUIRED',
      /different operation/,
    );
    await rejectsWith(
      store.execute(alice, approval.id, 'destroy-customer', T1, 'rq-53'),
      'APPROVAL_REQUIRED',
    );
    await rejectsWith(
      store.execute(bob, approval.id, 'destroy-tenant', T1, 'rq-54'),
      'PERMISSION_DENIED',
      /requester/,
    );
    await store.execute(alice, approval.id, 'destroy-tenant', T1, 'rq-55');
  });

  it('policy change binds the digest of the approved policy text', async () => {
    await rejectsWith(
      store.request(alice, 'change-policy', { org: 'acme' }, 'rq-60'),
      'INVALID_ARGUMENT',
      /payloadDigest/,
    );
    const digest = createHash('sha256').update('{"version":1,"rules":[]}').digest('hex');
    const other = createHash('sha256').update('{"version":1,"rules":[1]}').digest('hex');
    const { approval } = await store.request(
      alice,
      'change-policy',
      { org: 'acme', payloadDigest: digest },
      'rq-61',
    );
    await store.approve(bob, approval.id, 'rq-62');
    await rejectsWith(
      store.execute(alice, approval.id, 'change-policy', { org: 'acme', payloadDigest: other }, 'rq-63'),
      'APPROVAL_REQUIRED',
    );
    await store.execute(alice, approval.id, 'change-policy', { org: 'acme', payloadDigest: digest }, 'rq-64');
  });

  it('approvals survive a restart (close and reopen the SQLite file)', async () => {
    const { approval } = await store.request(alice, 'destroy-tenant', { org: 'acme', tenant: 't7' }, 'rq-70');
    store.close();
    store = new ApprovalStore({ path: join(dir, 'approvals.db'), windowMs: WINDOW, audit, now });
    assert.ok(
      store.list('acme', 'pending').some((a) => a.id === approval.id),
      'pending approval still listed after reopen',
    );
    await store.approve(bob, approval.id, 'rq-71');
    store.close();
    store = new ApprovalStore({ path: join(dir, 'approvals.db'), windowMs: WINDOW, audit, now });
    await store.execute(alice, approval.id, 'destroy-tenant', { org: 'acme', tenant: 't7' }, 'rq-72');
    assert.equal(store.list('acme', 'executed').filter((a) => a.id === approval.id).length, 1);
  });

  it('the audit chain of all those steps verifies', async () => {
    const r = await verifyAuditFile(auditPath());
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.ok(r.records >= 30, `records ${r.records}`);
  });

  it('a step whose audit record cannot be written is undone (fail-closed)', async () => {
    const failing: AuditSink = {
      append: () => Promise.reject(new KbError('AUDIT_UNAVAILABLE', 'disk full')),
      head: () => ({ seq: 0, hash: '' }),
      health: () => ({ ok: false, reason: 'disk full' }),
      close: async () => undefined,
    };
    const s = new ApprovalStore({ path: join(dir, 'failing.db'), windowMs: WINDOW, audit: failing, now });
    await rejectsWith(s.request(alice, 'destroy-tenant', T1, 'rq-80'), 'AUDIT_UNAVAILABLE');
    assert.equal(s.list('acme').length, 0, 'no approval row left behind');
    s.close();
  });

  it('a release whose audit record cannot be written leaves the approval used', async () => {
    let fail = false;
    const flaky: AuditSink = {
      append: (r) => (fail ? Promise.reject(new KbError('AUDIT_UNAVAILABLE', 'disk full')) : audit.append(r)),
      head: () => audit.head(),
      health: () => audit.health(),
      close: async () => undefined,
    };
    const s = new ApprovalStore({ path: join(dir, 'flaky.db'), windowMs: WINDOW, audit: flaky, now });
    const { approval } = await s.request(alice, 'rotate-oek', { org: 'acme' }, 'rq-90');
    await s.approve(bob, approval.id, 'rq-91');
    const used = await s.execute(alice, approval.id, 'rotate-oek', { org: 'acme' }, 'rq-92');
    fail = true;
    await rejectsWith(s.release(alice, approval.id, 'rq-93', 'UNAVAILABLE'), 'AUDIT_UNAVAILABLE');
    const after = s.list('acme').find((a) => a.id === approval.id);
    assert.equal(after?.status, 'executed');
    assert.equal(after?.executedAt, used.approval.executedAt, 'executed_at restored');
    s.close();
  });
});

describe('approvals kept, listed and pruned', () => {
  const RETENTION = 10 * WINDOW;
  let dir: string;
  let audit: FileAuditSink;
  let t = 1_900_000_000_000;
  const now = () => t;
  const open = () =>
    new ApprovalStore({
      path: join(dir, 'approvals.db'),
      windowMs: WINDOW,
      retentionMs: RETENTION,
      audit,
      now,
    });
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kb-approvals-kept-'));
    audit = await FileAuditSink.open({ path: join(dir, 'audit.log'), now });
  });
  after(async () => {
    await audit.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ListApprovals filters on the status shown now, newest first, bounded by the limit', async () => {
    const s = open();
    const made = async (op: 'destroy-tenant' | 'rotate-oek', n: number) => {
      const target = op === 'rotate-oek' ? { org: 'acme' } : T1;
      const r = await s.request(alice, op, target, `rq-l${n}`);
      t += 1;
      return r.approval.id;
    };
    const expired = await made('destroy-tenant', 1);
    t += WINDOW; // its window has ended: shown expired (stored pending)
    const approved = await made('rotate-oek', 2);
    await s.approve(bob, approved, 'rq-l2a');
    const executed = await made('rotate-oek', 3);
    await s.approve(bob, executed, 'rq-l3a');
    await s.execute(alice, executed, 'rotate-oek', { org: 'acme' }, 'rq-l3e');
    const cancelled = await made('destroy-tenant', 4);
    await s.cancel(alice, cancelled, 'rq-l4c');
    const pending = await made('destroy-tenant', 5);
    const ids = (shown?: Parameters<ApprovalStore['listShown']>[1], limit = 100) =>
      s.listShown('acme', shown, limit).map((a) => a.id);
    assert.deepEqual(ids(), [pending, cancelled, executed, approved, expired]);
    assert.deepEqual(ids(undefined, 2), [pending, cancelled]);
    assert.deepEqual(ids('pending'), [pending]);
    assert.deepEqual(ids('approved'), [approved]);
    assert.deepEqual(ids('executed'), [executed]);
    assert.deepEqual(ids('cancelled'), [cancelled]);
    assert.deepEqual(ids('expired'), [expired]);
    assert.deepEqual(s.listShown('globex', undefined, 100), []);
    t += WINDOW; // now every open one has expired too
    assert.deepEqual(ids('expired'), [pending, approved, expired]);
    assert.deepEqual(ids('pending'), []);
    s.close();
  });

  it('an approval is deleted once its window ended more than the retention ago (at open, before a request)', async () => {
    const s = open();
    const before = s.listShown('acme', undefined, 100).length;
    assert.equal(before, 5);
    t += RETENTION - 2 * WINDOW; // the newest ended WINDOW ago + this: still within the retention
    const kept = await s.request(alice, 'destroy-tenant', T1, 'rq-p1');
    assert.equal(s.listShown('acme', undefined, 100).length, 6, 'nothing pruned within the retention');
    t += 2 * WINDOW + 10; // the first five ended more than the retention ago
    s.close();
    const again = open(); // pruned at open
    assert.deepEqual(
      again.listShown('acme', undefined, 100).map((a) => a.id),
      [kept.approval.id],
    );
    t += RETENTION + WINDOW; // and before a request
    const fresh = await again.request(alice, 'rotate-oek', { org: 'acme' }, 'rq-p2');
    assert.deepEqual(
      again.listShown('acme', undefined, 100).map((a) => a.id),
      [fresh.approval.id],
    );
    assert.equal(again.prune(), 0);
    // Every step of the pruned approvals is still in the audit log.
    const recs = await queryAudit(join(dir, 'audit.log'), {});
    assert.ok(recs.some((r) => r.reason?.includes(kept.approval.id)));
    again.close();
  });

  it('a negative retention is refused', () => {
    assert.throws(
      () => new ApprovalStore({ path: ':memory:', retentionMs: -1 }),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
  });
});
