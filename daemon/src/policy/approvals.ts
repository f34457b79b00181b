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
import type { AuditSink } from '../audit/audit-sink.ts';
import { highestRole } from './admin-roles.ts';
import { APPROVAL_OPS, DEFAULT_APPROVAL_RETENTION_MS } from './approval.ts';
import type {
  Approval,
  ApprovalOp,
  ApprovalStatus,
  ApprovalStep,
  ApprovalTarget,
  ShownApprovalStatus,
} from './approval.ts';
import { approvalStepRecord } from './approval-audit.ts';
import type { StepRecord } from './approval-audit.ts';
import { SCHEMA, fromRow, widenOpCheck } from './approval-table.ts';
import type { Row } from './approval-table.ts';
import type { CallerIdentity, Role } from './authorizer.ts';

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

const RPC = 'keybroker.v1.Approvals/';

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
    const record = approvalStepRecord(this.#now(), { who, rpc, requestId, result, reason, approval });
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

  async #record(r: StepRecord): Promise<void> {
    if (this.#audit !== undefined) await this.#audit.append(approvalStepRecord(this.#now(), r));
  }
}
