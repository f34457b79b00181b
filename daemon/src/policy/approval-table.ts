/** The SQLite table behind the approval store: its schema, its migration, and row decoding. */
import type Database from 'better-sqlite3';
import type { Approval, ApprovalOp, ApprovalStatus } from './approval.ts';

/** A row of the approvals table. */
export interface Row {
  id: string;
  op: ApprovalOp;
  org: string;
  tenant: string | null;
  customer: string | null;
  payload_digest: string | null;
  requester: string;
  requested_at: number;
  expires_at: number;
  status: ApprovalStatus;
  approver: string | null;
  approved_at: number | null;
  executed_at: number | null;
}

/** The approvals table (SQLite, STRICT). */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS approvals (
  id TEXT PRIMARY KEY,
  op TEXT NOT NULL CHECK (op IN ('destroy-tenant','destroy-customer','rotate-oek','change-policy','issue-admin-certificate')),
  org TEXT NOT NULL, tenant TEXT, customer TEXT, payload_digest TEXT,
  requester TEXT NOT NULL,
  requested_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','approved','executed','cancelled')),
  approver TEXT, approved_at INTEGER, executed_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS approvals_org_status ON approvals (org, status);
CREATE INDEX IF NOT EXISTS approvals_org_requested ON approvals (org, requested_at);
CREATE INDEX IF NOT EXISTS approvals_expires ON approvals (expires_at);
`;

/**
 * A file made before 'issue-admin-certificate' existed has the narrower CHECK on `op`: SQLite
 * cannot alter a CHECK, so the table is copied into the current shape once, in one transaction.
 */
export function widenOpCheck(db: Database.Database): void {
  const row = db
    .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'approvals'")
    .get() as { sql: string } | undefined;
  if (row === undefined || row.sql.includes("'issue-admin-certificate'")) return;
  db.transaction(() => {
    db.exec('ALTER TABLE approvals RENAME TO approvals_old');
    for (const idx of ['approvals_org_status', 'approvals_org_requested', 'approvals_expires'])
      db.exec(`DROP INDEX IF EXISTS ${idx}`);
    db.exec(SCHEMA);
    db.exec('INSERT INTO approvals SELECT * FROM approvals_old');
    db.exec('DROP TABLE approvals_old');
  })();
}

/** The approval a row holds. */
export function fromRow(r: Row): Approval {
  return {
    id: r.id,
    op: r.op,
    org: r.org,
    ...(r.tenant === null ? {} : { tenant: r.tenant }),
    ...(r.customer === null ? {} : { customer: r.customer }),
    ...(r.payload_digest === null ? {} : { payloadDigest: r.payload_digest }),
    requester: r.requester,
    requestedAt: r.requested_at,
    expiresAt: r.expires_at,
    status: r.status,
    ...(r.approver === null ? {} : { approver: r.approver }),
    ...(r.approved_at === null ? {} : { approvedAt: r.approved_at }),
    ...(r.executed_at === null ? {} : { executedAt: r.executed_at }),
  };
}
