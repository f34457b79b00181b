// Policy change under the two-person rule, end to end on a real SQLite file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import { applyApprovedPolicy, policyDigest } from '../../daemon/src/policy/policy-change.ts';
import { loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { BASE_POLICY, caller } from './policy-fixtures.ts';

const alice = caller('spiffe://acme/admin/alice', ['admin']);
const bob = caller('spiffe://acme/admin/bob', ['admin']);

describe('policy change with two admins', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-policy-change-'));
  const approvals = new ApprovalStore({ path: join(dir, 'approvals.db') });
  after(() => {
    approvals.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const oldText = JSON.stringify(BASE_POLICY);
  const newText = JSON.stringify({ ...BASE_POLICY, fipsMode: true });

  it('applies only the approved text, once', async () => {
    const store = new PolicyStore(loadPolicy(oldText));
    const { approval } = await approvals.request(
      alice,
      'change-policy',
      { org: 'acme', payloadDigest: policyDigest(newText) },
      'r1',
    );
    const change = { store, approvals, who: alice, approvalId: approval.id, requestId: 'r2' };
    await assert.rejects(
      applyApprovedPolicy({ ...change, text: newText }),
      (e: unknown) => e instanceof KbError && e.code === 'APPROVAL_REQUIRED',
    );
    await approvals.approve(bob, approval.id, 'r3');
    const other = JSON.stringify({ ...BASE_POLICY, rules: [] });
    await assert.rejects(
      applyApprovedPolicy({ ...change, text: other }),
      (e: unknown) => e instanceof KbError && e.code === 'APPROVAL_REQUIRED',
    );
    assert.equal(store.current()?.fipsMode, false, 'nothing applied yet');
    const swap = await applyApprovedPolicy({ ...change, text: newText });
    assert.equal(swap.digest, policyDigest(newText));
    assert.equal(store.current()?.fipsMode, true);
    await assert.rejects(
      applyApprovedPolicy({ ...change, text: newText }),
      (e: unknown) => e instanceof KbError && e.code === 'APPROVAL_REQUIRED',
    );
  });

  it('an invalid policy is refused before it can consume an approval', async () => {
    const store = new PolicyStore(loadPolicy(oldText));
    const bad = '{"version":1,"rules":[{"id":"x"}]}';
    const { approval } = await approvals.request(
      alice,
      'change-policy',
      { org: 'acme', payloadDigest: policyDigest(bad) },
      'r4',
    );
    await approvals.approve(bob, approval.id, 'r5');
    await assert.rejects(
      applyApprovedPolicy({
        store,
        approvals,
        who: alice,
        approvalId: approval.id,
        text: bad,
        requestId: 'r6',
      }),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
    assert.equal(
      approvals.list('acme', 'approved').filter((a) => a.id === approval.id).length,
      1,
      'approval still unused',
    );
  });

  it('a policy that cannot be persisted is not applied and gives its approval back', async () => {
    const store = new PolicyStore(loadPolicy(oldText));
    const { approval } = await approvals.request(
      alice,
      'change-policy',
      { org: 'acme', payloadDigest: policyDigest(newText) },
      'r7',
    );
    await approvals.approve(bob, approval.id, 'r8');
    const change = { store, approvals, who: alice, approvalId: approval.id, text: newText, requestId: 'r9' };
    await assert.rejects(
      applyApprovedPolicy({
        ...change,
        persist: () => {
          throw new KbError('AUDIT_UNAVAILABLE', 'disk full');
        },
      }),
      (e: unknown) => e instanceof KbError && e.code === 'AUDIT_UNAVAILABLE',
    );
    assert.equal(store.current()?.fipsMode, false, 'not applied');
    assert.equal(approvals.list('acme').find((a) => a.id === approval.id)?.status, 'approved');
    const swap = await applyApprovedPolicy(change);
    assert.equal(swap.digest, policyDigest(newText));
    assert.equal(store.current()?.fipsMode, true);
  });
});
