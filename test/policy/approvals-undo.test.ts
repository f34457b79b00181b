// Approval undos are compare-and-set (review L9): a step whose audit record fails reverts only the
// state it wrote itself. Two failing steps interleaved on one approval (approve, then execute,
// both records failing in that order) used to leave it 'approved' with no approver.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { AuditPosition, AuditRecordInput, AuditSink } from '../../daemon/src/audit/audit-sink.ts';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import type { ApprovalTarget } from '../../daemon/src/policy/approval.ts';
import { caller } from './policy-fixtures.ts';

const alice = caller('spiffe://acme/admin/alice', ['admin']);
const bob = caller('spiffe://acme/admin/bob', ['admin']);
const carol = caller('spiffe://acme/admin/carol', ['admin']);
const T1: ApprovalTarget = { org: 'acme', tenant: 't1' };

/** Each append waits until the test settles it: the steps' records can fail in any order. */
class GatedSink implements AuditSink {
  readonly waiting = new Map<string, { resolve: (p: AuditPosition) => void; reject: (e: Error) => void }>();
  gated = false;
  append(r: AuditRecordInput): Promise<AuditPosition> {
    if (!this.gated) return Promise.resolve({ seq: 1, hash: '' });
    return new Promise((resolve, reject) => this.waiting.set(r.requestId, { resolve, reject }));
  }
  fail(requestId: string): void {
    this.waiting.get(requestId)?.reject(new Error('disk full'));
  }
  head(): AuditPosition {
    return { seq: 0, hash: '' };
  }
  health() {
    return { ok: true };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kb-approvals-undo-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const tick = () => new Promise((r) => setImmediate(r));

describe('approval undo is compare-and-set', () => {
  const orders = [
    { name: 'approve fails first, then execute', first: 'approve', second: 'execute' },
    { name: 'execute fails first, then approve', first: 'execute', second: 'approve' },
  ] as const;
  for (const o of orders) {
    it(`approve and execute both lose their records (${o.name}): a consistent approval`, async () => {
      const sink = new GatedSink();
      const store = new ApprovalStore({ path: join(dir, `${o.first}.db`), audit: sink });
      try {
        const { approval } = await store.request(alice, 'destroy-tenant', T1, 'rq-req');
        sink.gated = true;
        const approving = store.approve(bob, approval.id, 'rq-approve');
        await tick(); // approve has written 'approved' and waits for its record
        const executing = store.execute(alice, approval.id, 'destroy-tenant', T1, 'rq-execute');
        await tick(); // execute has written 'executed' and waits for its record
        const settle = { approve: approving, execute: executing };
        sink.fail(`rq-${o.first}`);
        await assert.rejects(settle[o.first]);
        sink.fail(`rq-${o.second}`);
        await assert.rejects(settle[o.second]);
        const a = store.list('acme')[0];
        // approve's undo never clears the approver under a later execute; execute's undo gives
        // back exactly the approval it consumed (approved by bob), whatever the order.
        const states = { status: a?.status, approver: a?.approver };
        const want =
          o.first === 'approve'
            ? { status: 'approved', approver: bob.uri }
            : { status: 'pending', approver: undefined };
        assert.deepEqual(states, want);
        assert.ok(
          !(a?.status === 'approved' && a.approver === undefined),
          'never approved without an approver',
        );
      } finally {
        store.close();
      }
    });
  }

  it('an undo reports whether it applied; a stale one changes nothing', async () => {
    const store = new ApprovalStore({ path: join(dir, 'stale.db') });
    try {
      const req = await store.request(alice, 'destroy-tenant', T1, 'r1');
      const approved = await store.approve(bob, req.approval.id, 'r2');
      await store.cancel(carol, req.approval.id, 'r3');
      assert.equal(approved.undo(), false, 'approve undo after a cancel: not applied');
      assert.equal(store.list('acme')[0]?.status, 'cancelled');
      assert.equal(req.undo(), false, 'request undo of a no-longer-pending approval: not applied');
      assert.equal(store.list('acme').length, 1);
    } finally {
      store.close();
    }
  });
});
