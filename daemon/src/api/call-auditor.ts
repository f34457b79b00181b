/**
 * The audit records of a call, fail-closed: the outcome record (ok, denied or error, with why),
 * the `intent` record a mutating call makes durable before its handler runs, and the undo when a
 * state change could not be recorded.
 */
import { KbError, toKbError } from '../errors.ts';
import type { AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';
import type { CallerIdentity, Decision } from '../policy/authorizer.ts';
import type { Logger } from '../obs/logger.ts';
import type { AuditFacts, CallTarget } from './call-gate.ts';
import { throwIfAbandoned } from './call-deadline.ts';
import type { Begun } from './call-deadline.ts';
import { customerList } from './customer-list.ts';

/** Error codes that mean "refused" in the audit record (result 'denied'). */
const REFUSALS: ReadonlySet<string> = new Set([
  'PERMISSION_DENIED',
  'APPROVAL_REQUIRED',
  'ALGORITHM_NOT_ALLOWED',
  'RATE_LIMITED',
]);

/** The audit record of one call's outcome (or, with `intent`, of what it is about to do). */
export function callAuditRecord(
  rpc: string,
  requestId: string,
  identity: CallerIdentity | undefined,
  target: CallTarget | undefined,
  facts: AuditFacts,
  err: KbError | undefined,
  decision: Decision | undefined,
  note: string | undefined,
  intent: boolean,
): AuditRecordInput {
  const customer =
    facts.customer ??
    (facts.customers !== undefined && facts.customers.size > 0 ? customerList(facts.customers) : undefined) ??
    target?.customer;
  // A refusal is 'denied' whether the policy decided it or a later check (approval, role in
  // the approval store, rate limit, the customer's authorization) did; else it is an 'error'.
  const refusal = facts.refusal;
  const denied =
    (decision !== undefined && !decision.allow) ||
    (err !== undefined &&
      (REFUSALS.has(err.code) || (refusal !== undefined && err.code === 'DECRYPTION_FAILED')));
  // A refusal after the policy allowed the call records why it was refused, not the allow rule.
  const refusedLater = denied && err !== undefined && decision?.allow === true;
  const reason =
    note ??
    facts.reason ??
    (refusedLater
      ? (refusal?.reason ?? err.safeMessage)
      : refusal !== undefined && decision?.allow === true
        ? `allowed; some items refused (${refusal.reason})`
        : decision?.reason);
  // Assigned field by field rather than spread: this runs for every call.
  const record: { -readonly [K in keyof AuditRecordInput]: AuditRecordInput[K] } = {
    time: new Date(),
    requestId,
    identity: identity?.uri ?? 'unauthenticated',
    rpc,
    result: intent ? 'intent' : err === undefined ? 'ok' : denied ? 'denied' : 'error',
  };
  if (target?.org !== undefined) record.org = target.org;
  if (target?.tenant !== undefined) record.tenant = target.tenant;
  if (customer !== undefined) record.customer = customer;
  if (facts.keyName !== undefined) record.keyName = facts.keyName;
  if (facts.keyVersion !== undefined) record.keyVersion = facts.keyVersion;
  if (err !== undefined) record.code = err.code;
  if (reason !== undefined) record.reason = reason;
  return record;
}

export class CallAuditor {
  readonly #audit: AuditSink;
  readonly #log: Logger;

  constructor(audit: AuditSink, log: Logger) {
    this.#audit = audit;
    this.#log = log;
  }

  /** Append the call's record; AUDIT_UNAVAILABLE (to fail the call with) when it cannot be. */
  async append(
    rpc: string,
    requestId: string,
    identity: CallerIdentity | undefined,
    target: CallTarget | undefined,
    facts: AuditFacts,
    err: KbError | undefined,
    decision: Decision | undefined,
    note?: string,
    intent = false,
  ): Promise<KbError | undefined> {
    const record = callAuditRecord(rpc, requestId, identity, target, facts, err, decision, note, intent);
    try {
      await this.#audit.append(record);
      return undefined;
    } catch (auditErr) {
      // Fail-closed: without a durable record the call fails, whatever its own outcome.
      this.#log.error(
        { requestId, rpc, err: toKbError(auditErr).detail ?? String(auditErr) },
        'audit append failed',
      );
      return new KbError('AUDIT_UNAVAILABLE');
    }
  }

  /**
   * Before a mutating handler runs: refuse while the audit log is unhealthy or the caller has
   * already given up, then make the `intent` record durable (fail-closed: no record, no effect).
   */
  async intent(
    rpc: string,
    begun: Begun,
    identity: CallerIdentity,
    target: CallTarget,
    decision: Decision,
  ): Promise<void> {
    const h = this.#audit.health();
    if (!h.ok) throw new KbError('AUDIT_UNAVAILABLE', undefined, { detail: h.reason ?? 'unhealthy' });
    throwIfAbandoned(begun);
    const err = await this.append(
      rpc,
      begun.requestId,
      identity,
      target,
      {},
      undefined,
      decision,
      undefined,
      true,
    );
    if (err !== undefined) throw err;
    // The intent write may have outlasted the deadline: nothing has happened yet, so refuse.
    throwIfAbandoned(begun);
  }

  /** The outcome record of a call that changed state failed: undo what can be undone. */
  undo(rpc: string, requestId: string, facts: AuditFacts): void {
    if (facts.undoIfUnrecorded === undefined) return;
    try {
      facts.undoIfUnrecorded();
    } catch (err) {
      this.#log.error({ requestId, rpc, err: toKbError(err).detail ?? String(err) }, 'undo failed');
    }
  }
}
