/**
 * approvals.db files made before 'issue-admin-certificate' existed carry a CHECK on `op` without
 * it: opening one widens the table in place (rows, ids and states kept), after which the new
 * operation can be requested, approved and executed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import { caller } from './policy-fixtures.ts';

const OLD_SCHEMA = `
CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  op TEXT NOT NULL CHECK (op IN ('destroy-tenant','destroy-customer','rotate-oek','change-policy')),
  org TEXT NOT NULL, tenant TEXT, customer TEXT, payload_digest TEXT,
  requester TEXT NOT NULL,
  requested_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','approved','executed','cancelled')),
  approver TEXT, approved_at INTEGER, executed_at INTEGER
) STRICT;
CREATE INDEX approvals_org_status ON approvals (org, status);
CREATE INDEX approvals_org_requested ON approvals (org, requested_at);
CREATE INDEX approvals_expires ON approvals (expires_at);
`;

test('an old approvals.db is widened for issue-admin-certificate, keeping its rows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-apr-mig-'));
  const path = join(dir, 'approvals.db');
  const now = Date.now();
  const old = new Database(path);
  old.exec(OLD_SCHEMA);
  old
    .prepare(
      `INSERT INTO approvals (id, op, org, tenant, requester, requested_at, expires_at, status)
       VALUES ('apr-00000000000000000001', 'destroy-tenant', 'acme', 't1', 'spiffe://acme/admin/alice', ?, ?, 'pending')`,
    )
    .run(now, now + 3_600_000);
  assert.throws(
    () =>
      old
        .prepare(
          `INSERT INTO approvals (id, op, org, requester, requested_at, expires_at, status)
           VALUES ('apr-x', 'issue-admin-certificate', 'acme', 'a', 0, 1, 'pending')`,
        )
        .run(),
    /CHECK constraint/,
    'the old file refuses the new operation',
  );
  old.close();

  const alice = caller('spiffe://acme/admin/alice', ['admin']);
  const bob = caller('spiffe://acme/admin/bob', ['admin']);
  const store = new ApprovalStore({ path, windowMs: 3_600_000 });
  try {
    const kept = store.list('acme').find((a) => a.id === 'apr-00000000000000000001');
    assert.equal(kept?.op, 'destroy-tenant', 'old row kept');
    assert.equal(kept?.status, 'pending');
    const target = { org: 'acme', payloadDigest: 'ab'.repeat(32) };
    const req = await store.request(alice, 'issue-admin-certificate', target, 'rq-1');
    await store.approve(bob, req.approval.id, 'rq-2');
    const done = await store.execute(alice, req.approval.id, 'issue-admin-certificate', target, 'rq-3');
    assert.equal(done.approval.status, 'executed');
  } finally {
    store.close();
  }
  // Opening again is a no-op (already widened).
  new ApprovalStore({ path, windowMs: 3_600_000 }).close();
  rmSync(dir, { recursive: true, force: true });
});
