/**
 * keybroker.v1.Approvals: the two-person rule over gRPC (request -> approve -> execute), and the
 * check the destructive Admin RPCs and Policy.SetPolicy make before acting. The ApprovalStore is
 * built without an audit sink: the call gate writes the records (an `intent` before each step,
 * then its outcome), each step's reason (which approval, which operation) goes into the outcome
 * through AuditFacts, and a step whose outcome record cannot be written is undone (the step's
 * compare-and-set undo, through AuditFacts.undoIfUnrecorded).
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError, toKbError } from '../errors.ts';
import type { CustomerId, OrgId, TenantId } from '../ids.ts';
import {
  shownStatus,
  type Approval,
  type ApprovalOp,
  type ApprovalStep,
  type ApprovalTarget,
  type ShownApprovalStatus,
} from '../policy/approval.ts';
import type { ApprovalStore } from '../policy/approvals.ts';
import { policyDigest, validatePolicyFor } from '../policy/policy-change.ts';
import type { PolicyStore } from '../policy/policy-store.ts';
import type { AuditFacts, CallContext, CallGate, CallTarget } from './call-gate.ts';
import { policySectionOf, policyTextField } from './policy-scope.ts';
import { requiredCustomer, requiredOrg, tenantRefOf } from './request-bounds.ts';

const RPC = 'keybroker.v1.Approvals/';

/** What the Approvals and Policy services need from the daemon. */
export interface Governance {
  readonly approvals: ApprovalStore;
  readonly policy: PolicyStore;
  /** FIPS mode as the engine applies it (document or config). */
  readonly fipsMode: () => boolean;
  /** Whether destroy/rotate-org/set-policy need an approval (config policy.twoPersonRule). */
  readonly twoPersonRule: () => boolean;
  /**
   * Writes a new policy text where the daemon loads it from (survives restarts and SIGHUP): the
   * daemon-wide base, or `section`'s org section.
   */
  readonly persistPolicy: (text: string, section?: string) => void;
  /** The org whose admins may replace the daemon-wide base (config policy.operatorOrg; '' = none). */
  readonly operatorOrg?: () => string;
}

/** Proto enum name -> store operation. */
const OPS: Readonly<Record<string, ApprovalOp>> = {
  APPROVAL_OPERATION_DESTROY_TENANT: 'destroy-tenant',
  APPROVAL_OPERATION_DESTROY_CUSTOMER: 'destroy-customer',
  APPROVAL_OPERATION_ROTATE_ORG_KEY: 'rotate-oek',
  APPROVAL_OPERATION_ISSUE_ADMIN_CERTIFICATE: 'issue-admin-certificate',
  APPROVAL_OPERATION_SET_POLICY: 'change-policy',
};
const OP_NAMES = new Map(Object.entries(OPS).map(([k, v]) => [v, k]));
const STATUS: Readonly<Record<string, ShownApprovalStatus>> = {
  APPROVAL_STATUS_PENDING: 'pending',
  APPROVAL_STATUS_APPROVED: 'approved',
  APPROVAL_STATUS_EXECUTED: 'executed',
  APPROVAL_STATUS_CANCELLED: 'cancelled',
  APPROVAL_STATUS_EXPIRED: 'expired',
};
const MAX_LISTED = 1000;

const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());

/** Store approval -> proto Approval. */
export function approvalMessage(a: Approval, now = Date.now()): object {
  return {
    approvalId: a.id,
    operation: OP_NAMES.get(a.op) ?? 'APPROVAL_OPERATION_UNSPECIFIED',
    org: a.org,
    tenant: a.tenant ?? '',
    customer: a.customer ?? '',
    policySha256: a.payloadDigest ?? '',
    requester: a.requester,
    approver: a.approver ?? '',
    status: `APPROVAL_STATUS_${shownStatus(a, now).toUpperCase()}`,
    requestTime: iso(a.requestedAt),
    expireTime: iso(a.expiresAt),
    approveTime: iso(a.approvedAt),
    executeTime: iso(a.executedAt),
  };
}

function approvalIdField(v: unknown): string {
  if (typeof v !== 'string' || v === '' || v.length > 64)
    throw new KbError('INVALID_ARGUMENT', 'approval_id: expected an approval id');
  return v;
}

/** The approval target a RequestApproval names, validated per operation. */
function requestTarget(op: ApprovalOp, r: Record<string, unknown>): ApprovalTarget {
  const org = requiredOrg(r.org);
  switch (op) {
    case 'destroy-tenant':
      return { org, tenant: tenantRefOf(org, r.tenant).tenant };
    case 'destroy-customer':
      return { org, tenant: tenantRefOf(org, r.tenant).tenant, customer: requiredCustomer(r.customer) };
    case 'rotate-oek':
      return { org };
    case 'change-policy': {
      // The document itself is required (validated by the handler before any approval exists).
      const text = policyTextField(r.policyJson);
      const d = policyDigest(text);
      const given = r.policySha256;
      if (given !== undefined && given !== '' && given !== d)
        throw new KbError('INVALID_ARGUMENT', 'policy_sha256: not the SHA-256 of policy_json');
      return { org, payloadDigest: d };
    }
    case 'issue-admin-certificate': {
      const d = r.policySha256;
      if (typeof d !== 'string' || !/^[0-9a-f]{64}$/.test(d))
        throw new KbError('INVALID_ARGUMENT', 'policy_sha256: expected 64 lowercase hex digits');
      return { org, payloadDigest: d };
    }
  }
}

const targetOf = (t: ApprovalTarget): CallTarget => ({
  org: t.org as OrgId,
  ...(t.tenant !== undefined ? { tenant: t.tenant as TenantId } : {}),
  ...(t.customer !== undefined ? { customer: t.customer as CustomerId } : {}),
});

/** The step's reason (approval id, operation) goes into the gate's audit record. */
function note(facts: AuditFacts, step: ApprovalStep): void {
  if (step.record.reason !== undefined) facts.reason = step.record.reason;
}

/** As note(), and the step is undone when the gate cannot write its outcome record. */
function noteUndoable(facts: AuditFacts, step: ApprovalStep): void {
  note(facts, step);
  facts.undoIfUnrecorded = () => void step.undo();
}

/**
 * Run a two-person operation: consume the caller's approved approval for exactly `op` on
 * `target`, then `run` it. If `run` fails the approval is released, so the requester can retry
 * the same operation within the window instead of asking a second admin again; the call's audit
 * record says so. Without an approval id: APPROVAL_REQUIRED. Just `run` when the rule is off.
 */
export async function withApproval<T>(
  g: Governance | undefined,
  ctx: CallContext,
  facts: AuditFacts,
  approvalId: unknown,
  op: ApprovalOp,
  target: ApprovalTarget,
  run: () => Promise<T>,
): Promise<T> {
  if (g === undefined || !g.twoPersonRule()) return run();
  if (approvalId === undefined || approvalId === '') {
    throw new KbError('APPROVAL_REQUIRED', `${op} needs an approval by a second admin (approval_id)`);
  }
  const id = approvalIdField(approvalId);
  note(facts, await g.approvals.execute(ctx.identity, id, op, target, ctx.requestId));
  try {
    return await run();
  } catch (err) {
    const code = toKbError(err).code;
    // Without an audit sink on the store this cannot fail on the record; were it to, the
    // approval would stay used (fail closed) and the operation's own error still goes out.
    // (A consumed approval is not undone when only the outcome record fails: the operation ran,
    // and its intent record is on file.)
    await g.approvals.release(ctx.identity, id, ctx.requestId, code).then(
      () => (facts.reason = `${facts.reason ?? op}; approval released: ${op} failed (${code})`),
      () => undefined,
    );
    throw err;
  }
}

/** Build the Approvals service implementation. */
export function approvalsService(gate: CallGate, g: Governance): UntypedServiceImplementation {
  type Req = Record<string, unknown>;
  const parsed = new WeakMap<Req, { op: ApprovalOp; target: ApprovalTarget }>();
  const parseRequest = (r: Req) => {
    const op = typeof r.operation === 'string' ? OPS[r.operation] : undefined;
    if (op === undefined) throw new KbError('INVALID_ARGUMENT', 'operation: expected an approval operation');
    const p = { op, target: requestTarget(op, r) };
    parsed.set(r, p);
    return p;
  };
  const own = (id: { org: OrgId }): CallTarget => ({ org: id.org });
  return {
    RequestApproval: gate.unary<Req, object>(`${RPC}RequestApproval`, {
      mutating: true,
      target: (_id, r) => targetOf(parseRequest(r).target),
      handle: async (ctx, r, facts) => {
        const p = parsed.get(r) ?? parseRequest(r);
        // A policy change is validated for where it would go before an approval is made for it.
        if (p.op === 'change-policy')
          validatePolicyFor(policySectionOf(g, ctx.identity), r.policyJson as string);
        const step = await g.approvals.request(ctx.identity, p.op, p.target, ctx.requestId);
        noteUndoable(facts, step);
        return { approval: approvalMessage(step.approval) };
      },
    }),
    ApproveRequest: gate.unary<Req, object>(`${RPC}ApproveRequest`, {
      mutating: true,
      target: (id) => own(id),
      handle: async (ctx, r, facts) => {
        const step = await g.approvals.approve(ctx.identity, approvalIdField(r.approvalId), ctx.requestId);
        noteUndoable(facts, step);
        return { approval: approvalMessage(step.approval) };
      },
    }),
    CancelApproval: gate.unary<Req, object>(`${RPC}CancelApproval`, {
      mutating: true,
      target: (id) => own(id),
      handle: async (ctx, r, facts) => {
        const step = await g.approvals.cancel(ctx.identity, approvalIdField(r.approvalId), ctx.requestId);
        noteUndoable(facts, step);
        return { approval: approvalMessage(step.approval) };
      },
    }),
    ListApprovals: gate.unary<Req, object>(`${RPC}ListApprovals`, {
      target: (_id, r) => ({ org: requiredOrg(r.org) }),
      handle: (_ctx, r) => {
        const want = typeof r.status === 'string' ? STATUS[r.status] : undefined;
        const now = Date.now();
        const list = g.approvals.listShown(requiredOrg(r.org), want, MAX_LISTED);
        return Promise.resolve({ approvals: list.map((a) => approvalMessage(a, now)) });
      },
    }),
  };
}
