/**
 * The two-person rule: destroy tenant, destroy customer, OEK (org root key) rotation and policy
 * change run only as request -> approve -> execute, where the approver is a second, distinct admin
 * identity of the same org, everything happens within a window after the request, and an approval
 * is consumed by exactly one successful execution (an operation that fails gives it back). State
 * lives in SQLite so a restart loses nothing; every step (refusals too) becomes an audit record,
 * and a step whose record cannot be written is undone. Undos are compare-and-set: they only
 * revert the exact state their own step wrote, never a later step's.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { KbError } from '../errors.ts';
import type { AuditPosition, AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';
import { highestRole } from './admin-roles.ts';
import type { CallerIdentity, Role } from './authorizer.ts';

/** Operations that need a second admin. */
export type ApprovalOp =
  'destroy-tenant' | 'destroy-customer' | 'rotate-oek' | 'change-policy' | 'issue-admin-certificate';
export const APPROVAL_OPS: readonly ApprovalOp[] = [
  'destroy-tenant',
  'destroy-customer',
  'rotate-oek',
  'change-policy',
  'issue-admin-certificate',
];

/** What an approval is for; execution must present exactly the same target. */
export interface ApprovalTarget {
  readonly org: string;
  readonly tenant?: string;
  readonly customer?: string;
  /**
   * SHA-256 (hex) of what exactly is approved: the new policy text (change-policy), the CSR PEM
   * (issue-admin-certificate).
   */
  readonly payloadDigest?: string;
}

export type ApprovalStatus = 'pending' | 'approved' | 'executed' | 'cancelled';
/** What a caller sees: pending or approved past its window shows as expired (the store keeps the last real state). */
export type ShownApprovalStatus = ApprovalStatus | 'expired';

/** The status `a` shows at `now`. */
export function shownStatus(a: Approval, now: number): ShownApprovalStatus {
  return (a.status === 'pending' || a.status === 'approved') && now >= a.expiresAt ? 'expired' : a.status;
}

/** Default retention of an approval after its window ends: 90 days (every step stays in the audit log). */
export const DEFAULT_APPROVAL_RETENTION_MS = 90 * 86_400_000;

export interface Approval extends ApprovalTarget {
  readonly id: string;
  readonly op: ApprovalOp;
  readonly requester: string;
  readonly requestedAt: number;
  readonly expiresAt: number;
  readonly status: ApprovalStatus;
  readonly approver?: string;
  readonly approvedAt?: number;
  readonly executedAt?: number;
}

/** A step's outcome: the approval and the audit record written for it. */
export interface ApprovalStep {
  readonly approval: Approval;
  readonly record: AuditRecordInput;
  readonly position?: AuditPosition;
  /**
   * Reverts this step when its record could not be written by whoever writes it (the daemon's
   * call gate); compare-and-set, so false when a later step has changed the approval since.
   */
  readonly undo: () => boolean;
}

export interface ApprovalStoreOptions {
  /** SQLite file path (":memory:" only in unit tests: it does not survive a restart). */
  readonly path: string;
  /** Request -> approve -> execute must all happen within this window (default 1 hour). */
  readonly windowMs?: number;
  /** How long an approval is kept once its window has ended (default 90 days); then it is deleted. */
  readonly retentionMs?: number;
  readonly audit?: AuditSink;
  readonly now?: () => number;
  /** The caller's effective role (default: highest of its certificate roles). */
  readonly roleOf?: (who: CallerIdentity) => Role | undefined;
}

interface Row {
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

const SCHEMA = `
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
function widenOpCheck(db: Database.Database): void {
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

function fromRow(r: Row): Approval {
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

const RPC = 'keybroker.v1.Approvals/';

interface StepRecord {
  readonly who: CallerIdentity;
  readonly rpc: string;
  readonly requestId: string;
  readonly result: 'ok' | 'denied';
  readonly code?: AuditRecordInput['code'];
  readonly reason: string;
  readonly approval?: Approval;
  readonly org?: string;
}

export class ApprovalStore {
  readonly #db: Database.Database;
  readonly #window: number;
  readonly #retention: number;
  readonly #audit: AuditSink | undefined;
  readonly #now: () => number;
  readonly #roleOf: (who: CallerIdentity) => Role | undefined;

  constructor(o: ApprovalStoreOptions) {
    this.#window = o.windowMs ?? 3_600_000;
    if (!(this.#window > 0)) throw new KbError('INVALID_ARGUMENT', 'windowMs must be > 0');
    this.#retention = o.retentionMs ?? DEFAULT_APPROVAL_RETENTION_MS;
    if (!(this.#retention >= 0)) throw new KbError('INVALID_ARGUMENT', 'retentionMs must be >= 0');
    this.#audit = o.audit;
    this.#now = o.now ?? Date.now;
    this.#roleOf = o.roleOf ?? ((who) => highestRole(who.roles));
    this.#db = new Database(o.path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    // Several broker processes (serve --workers) share this file: wait for a writer, do not fail.
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(SCHEMA);
    widenOpCheck(this.#db);
    this.prune();
  }

  /**
   * Delete the approvals whose window ended more than the retention ago (whatever their state:
   * none can change any more, and the audit log has every step). Runs at open and before each
   * request, so the table holds at most the requests of one window plus the retention.
   */
  prune(): number {
    return this.#db.prepare('DELETE FROM approvals WHERE expires_at <= ?').run(this.#now() - this.#retention)
      .changes;
  }

  /** Open a request; the requester must be an admin of the target's org. */
  async request(
    who: CallerIdentity,
    op: ApprovalOp,
    target: ApprovalTarget,
    requestId: string,
  ): Promise<ApprovalStep> {
    const rpc = `${RPC}RequestApproval`;
    if (!APPROVAL_OPS.includes(op)) throw new KbError('INVALID_ARGUMENT', 'unknown approval operation');
    await this.#requireAdmin(who, target.org, rpc, requestId, op);
    if (
      (op === 'change-policy' || op === 'issue-admin-certificate') &&
      !/^[0-9a-f]{64}$/.test(target.payloadDigest ?? '')
    ) {
      throw new KbError('INVALID_ARGUMENT', `${op} needs payloadDigest (SHA-256 hex of the policy or CSR)`);
    }
    this.prune();
    const now = this.#now();
    // Short enough (24 chars) that reason redaction, which hides long tokens, keeps it readable.
    const id = `apr-${randomBytes(10).toString('hex')}`;
    this.#db
      .prepare(
        `INSERT INTO approvals (id, op, org, tenant, customer, payload_digest, requester, requested_at, expires_at, status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
      )
      .run(
        id,
        op,
        target.org,
        target.tenant ?? null,
        target.customer ?? null,
        target.payloadDigest ?? null,
        who.uri,
        now,
        now + this.#window,
      );
    const approval = this.#get(id) as Approval;
    return this.#audited(approval, who, rpc, requestId, 'ok', `requested ${op} (approval ${id})`, () =>
      this.#cas(`DELETE FROM approvals WHERE id = ? AND status = 'pending' AND approver IS NULL`, id),
    );
  }

  /** Approve a pending request: a different admin of the same org, before it expires. */
  async approve(who: CallerIdentity, id: string, requestId: string): Promise<ApprovalStep> {
    const rpc = `${RPC}ApproveRequest`;
    const a = await this.#load(who, id, rpc, requestId);
    await this.#requireAdmin(who, a.org, rpc, requestId, a.op);
    if (who.uri === a.requester) {
      return this.#refuse(
        who,
        rpc,
        requestId,
        a,
        'PERMISSION_DENIED',
        'self-approval refused: a second admin must approve',
      );
    }
    if (a.status !== 'pending')
      return this.#refuse(who, rpc, requestId, a, 'FAILED_PRECONDITION', `approval is ${a.status}`);
    const now = this.#now();
    if (now >= a.expiresAt)
      return this.#refuse(who, rpc, requestId, a, 'FAILED_PRECONDITION', 'approval window expired');
    const ch = this.#db
      .prepare(
        `UPDATE approvals SET status = 'approved', approver = ?, approved_at = ? WHERE id = ? AND status = 'pending'`,
      )
      .run(who.uri, now, id);
    if (ch.changes !== 1)
      return this.#refuse(who, rpc, requestId, a, 'FAILED_PRECONDITION', 'approval changed concurrently');
    return this.#audited(
      this.#get(id) as Approval,
      who,
      rpc,
      requestId,
      'ok',
      `approved ${a.op} (approval ${id})`,
      () =>
        this.#cas(
          `UPDATE approvals SET status = 'pending', approver = NULL, approved_at = NULL
           WHERE id = ? AND status = 'approved' AND approver = ? AND approved_at = ?`,
          id,
          who.uri,
          now,
        ),
    );
  }

  /**
   * Consume an approved request for exactly `op` on exactly `target`; only the requester may, and
   * only once, before the window closes. Call this immediately before doing the operation, and
   * `release` it if the operation fails.
   */
  async execute(
    who: CallerIdentity,
    id: string,
    op: ApprovalOp,
    target: ApprovalTarget,
    requestId: string,
  ): Promise<ApprovalStep> {
    const rpc = `${RPC}ExecuteApproval`;
    const a = await this.#load(who, id, rpc, requestId);
    await this.#requireAdmin(who, a.org, rpc, requestId, a.op);
    const same =
      a.op === op &&
      a.org === target.org &&
      a.tenant === target.tenant &&
      a.customer === target.customer &&
      a.payloadDigest === target.payloadDigest;
    if (!same)
      return this.#refuse(
        who,
        rpc,
        requestId,
        a,
        'APPROVAL_REQUIRED',
        'approval is for a different operation',
      );
    if (who.uri !== a.requester)
      return this.#refuse(who, rpc, requestId, a, 'PERMISSION_DENIED', 'only the requester may execute');
    if (a.status !== 'approved') {
      const why = a.status === 'pending' ? 'not yet approved by a second admin' : `approval is ${a.status}`;
      return this.#refuse(who, rpc, requestId, a, 'APPROVAL_REQUIRED', why);
    }
    const now = this.#now();
    if (now >= a.expiresAt)
      return this.#refuse(who, rpc, requestId, a, 'APPROVAL_REQUIRED', 'approval window expired');
    const ch = this.#db
      .prepare(
        `UPDATE approvals SET status = 'executed', executed_at = ? WHERE id = ? AND status = 'approved'`,
      )
      .run(now, id);
    if (ch.changes !== 1)
      return this.#refuse(who, rpc, requestId, a, 'APPROVAL_REQUIRED', 'approval already used');
    return this.#audited(
      this.#get(id) as Approval,
      who,
      rpc,
      requestId,
      'ok',
      `executing ${a.op} (approval ${id})`,
      () =>
        this.#cas(
          `UPDATE approvals SET status = 'approved', executed_at = NULL
           WHERE id = ? AND status = 'executed' AND executed_at = ?`,
          id,
          now,
        ),
    );
  }

  /**
   * Give back an approval whose operation failed after `execute` consumed it: it is approved
   * again, within its original window, so the requester can retry exactly that operation rather
   * than start a new request. Audited; if the record cannot be written the approval stays used
   * (fail closed) and this throws. A no-op unless the approval is `executed`.
   */
  async release(who: CallerIdentity, id: string, requestId: string, why: string): Promise<void> {
    const used = this.#get(id);
    if (used?.status !== 'executed') return;
    const ch = this.#db
      .prepare(
        `UPDATE approvals SET status = 'approved', executed_at = NULL WHERE id = ? AND status = 'executed'`,
      )
      .run(id);
    if (ch.changes !== 1) return;
    const a = this.#get(id) as Approval;
    await this.#audited(
      a,
      who,
      `${RPC}ReleaseApproval`,
      requestId,
      'ok',
      `released approval ${id}: ${a.op} failed (${why}); it may be executed again until it expires`,
      () =>
        this.#cas(
          `UPDATE approvals SET status = 'executed', executed_at = ?
           WHERE id = ? AND status = 'approved' AND executed_at IS NULL`,
          used.executedAt ?? null,
          id,
        ),
    );
  }

  /** Withdraw a pending or approved request (requester or any admin of the org). */
  async cancel(who: CallerIdentity, id: string, requestId: string): Promise<ApprovalStep> {
    const rpc = `${RPC}CancelApproval`;
    const a = await this.#load(who, id, rpc, requestId);
    await this.#requireAdmin(who, a.org, rpc, requestId, a.op);
    const ch = this.#db
      .prepare(`UPDATE approvals SET status = 'cancelled' WHERE id = ? AND status IN ('pending','approved')`)
      .run(id);
    if (ch.changes !== 1)
      return this.#refuse(who, rpc, requestId, a, 'FAILED_PRECONDITION', `approval is ${a.status}`);
    return this.#audited(
      this.#get(id) as Approval,
      who,
      rpc,
      requestId,
      'ok',
      `cancelled approval ${id}`,
      () => this.#cas(`UPDATE approvals SET status = ? WHERE id = ? AND status = 'cancelled'`, a.status, id),
    );
  }

  /** Approvals of one org in a stored state, newest first. */
  list(org: string, status?: ApprovalStatus): Approval[] {
    const rows = (
      status === undefined
        ? this.#db.prepare('SELECT * FROM approvals WHERE org = ? ORDER BY requested_at DESC').all(org)
        : this.#db
            .prepare('SELECT * FROM approvals WHERE org = ? AND status = ? ORDER BY requested_at DESC')
            .all(org, status)
    ) as Row[];
    return rows.map(fromRow);
  }

  /** At most `limit` approvals of one org that show `shown` now (any, when undefined), newest first. */
  listShown(org: string, shown: ShownApprovalStatus | undefined, limit: number): Approval[] {
    const now = this.#now();
    const where =
      shown === undefined
        ? { sql: '', args: [] }
        : shown === 'expired'
          ? { sql: `AND status IN ('pending', 'approved') AND expires_at <= ?`, args: [now] }
          : shown === 'pending' || shown === 'approved'
            ? { sql: 'AND status = ? AND expires_at > ?', args: [shown, now] }
            : { sql: 'AND status = ?', args: [shown] };
    const rows = this.#db
      .prepare(`SELECT * FROM approvals WHERE org = ? ${where.sql} ORDER BY requested_at DESC LIMIT ?`)
      .all(org, ...where.args, limit) as Row[];
    return rows.map(fromRow);
  }

  close(): void {
    this.#db.close();
  }

  /** Run an undo statement; true when it changed the one row (its step's state was still there). */
  #cas(sql: string, ...args: (string | number | null)[]): boolean {
    return this.#db.prepare(sql).run(...args).changes === 1;
  }

  #get(id: string): Approval | undefined {
    const r = this.#db.prepare('SELECT * FROM approvals WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : fromRow(r);
  }

  async #load(who: CallerIdentity, id: string, rpc: string, requestId: string): Promise<Approval> {
    const a = typeof id === 'string' && /^apr-[0-9a-f]{20}$/.test(id) ? this.#get(id) : undefined;
    // Another org's approval is reported exactly like a missing one.
    if (a === undefined || a.org !== who.org) {
      await this.#record({
        who,
        rpc,
        requestId,
        result: 'denied',
        code: 'NOT_FOUND',
        reason: 'approval not found',
      });
      throw new KbError('NOT_FOUND', 'approval not found');
    }
    return a;
  }

  async #requireAdmin(
    who: CallerIdentity,
    org: string,
    rpc: string,
    requestId: string,
    op: string,
  ): Promise<void> {
    if (this.#roleOf(who) === 'admin' && who.org === org && who.tenant === undefined) return;
    const reason = `${op} needs an org admin identity`;
    await this.#record({ who, rpc, requestId, result: 'denied', code: 'PERMISSION_DENIED', reason, org });
    throw new KbError('PERMISSION_DENIED', reason);
  }

  async #refuse(
    who: CallerIdentity,
    rpc: string,
    requestId: string,
    a: Approval,
    code: 'PERMISSION_DENIED' | 'FAILED_PRECONDITION' | 'APPROVAL_REQUIRED',
    reason: string,
  ): Promise<never> {
    await this.#record({
      who,
      rpc,
      requestId,
      result: 'denied',
      code,
      reason: `${reason} (approval ${a.id})`,
      approval: a,
    });
    throw new KbError(code, reason);
  }

  async #audited(
    approval: Approval,
    who: CallerIdentity,
    rpc: string,
    requestId: string,
    result: 'ok',
    reason: string,
    undo: () => boolean,
  ): Promise<ApprovalStep> {
    const record = this.#input({ who, rpc, requestId, result, reason, approval });
    if (this.#audit === undefined) return { approval, record, undo };
    try {
      const position = await this.#audit.append(record);
      return { approval, record, position, undo };
    } catch (err) {
      // Fail closed: a step nobody can prove happened did not happen (unless a later step
      // already built on it: compare-and-set leaves that step's state alone).
      undo();
      throw err;
    }
  }

  #input(r: StepRecord): AuditRecordInput {
    const a = r.approval;
    const org = a?.org ?? r.org;
    return {
      time: new Date(this.#now()),
      requestId: r.requestId,
      identity: r.who.uri,
      ...(org === undefined ? {} : { org }),
      ...(a?.tenant === undefined ? {} : { tenant: a.tenant }),
      rpc: r.rpc,
      ...(a?.customer === undefined ? {} : { customer: a.customer }),
      result: r.result,
      ...(r.code === undefined ? {} : { code: r.code }),
      reason: r.reason,
    };
  }

  async #record(r: StepRecord): Promise<void> {
    if (this.#audit !== undefined) await this.#audit.append(this.#input(r));
  }
}
