/**
 * DestroyTenant/DestroyCustomer under the two-person rule, robust to a crash (issue 18 item 9):
 *  - a retry with an approval whose destroy is recorded gets that shred's receipt (the shred is
 *    finished first if a crash interrupted it), not "approval is executed";
 *  - an approval consumed by a call that crashed before recording its destroy (nothing was
 *    destroyed: the record precedes the first destruction) is released, so it works again.
 * The receipt's SHA-256 (of its signed body) goes into the call's audit record, so the receipt
 * is also covered by the HSM-signed audit checkpoints.
 */
import { createHash } from 'node:crypto';
import { toKbError } from '../errors.ts';
import type { CustomerId, OrgId, TenantId } from '../ids.ts';
import type { KeyBrokerApi, ShredReceipt } from '../keys/key-broker-api.ts';
import type { ApprovalOp, ApprovalTarget } from '../policy/approval.ts';
import type { Governance } from './approvals-service.ts';
import { withApproval } from './approvals-service.ts';
import type { AuditFacts, CallContext } from './call-gate.ts';

/** Approval ids whose destroy runs in this process now (a live call, not a crashed one). */
const executing = new Set<string>();

/** SHA-256 of the receipt's signed body, hex: what the audit record names. */
export function receiptSha256(r: ShredReceipt): string {
  return createHash('sha256').update(r.body, 'utf8').digest('hex');
}

/**
 * The receipt's hash into the call's audit record. Written in groups of 16 hex digits: the audit
 * log redacts any run of 32+ base64-ish characters from reasons, as possible key material.
 */
function noteReceipt(facts: AuditFacts, r: ShredReceipt): void {
  const grouped = receiptSha256(r).match(/.{16}/g)?.join(':') ?? '';
  facts.reason = `${facts.reason !== undefined ? `${facts.reason}; ` : ''}receipt sha256 ${grouped}`;
}

/** Run a destroy (`run` gets the approval id to record) under `withApproval`, as described above. */
export async function withShredApproval(
  g: Governance | undefined,
  broker: KeyBrokerApi,
  ctx: CallContext,
  facts: AuditFacts,
  approvalId: unknown,
  op: Extract<ApprovalOp, 'destroy-tenant' | 'destroy-customer'>,
  target: ApprovalTarget & { tenant: string },
  run: (approvalId: string | undefined) => Promise<ShredReceipt>,
): Promise<ShredReceipt> {
  const id =
    typeof approvalId === 'string' && approvalId !== '' && approvalId.length <= 64 ? approvalId : undefined;
  const rule = g !== undefined && g.twoPersonRule();
  if (rule && id !== undefined && !executing.has(id)) {
    const prior = await broker.shredReceiptForApproval?.(id, {
      org: target.org,
      tenant: target.tenant,
      ...(target.customer !== undefined ? { customer: target.customer } : {}),
    });
    if (prior !== undefined) {
      facts.reason = `${op} of approval ${id} was already recorded; returning its receipt`;
      noteReceipt(facts, prior);
      return prior;
    }
    await releaseIfCrashed(g, broker, ctx, id, op, target);
  }
  if (id !== undefined) executing.add(id);
  try {
    const r = await withApproval(g, ctx, facts, approvalId, op, target, () => run(rule ? id : undefined));
    noteReceipt(facts, r);
    return r;
  } finally {
    if (id !== undefined) executing.delete(id);
  }
}

/**
 * The caller's approval for exactly this destroy is executed, yet no destroy recorded it and no
 * call runs it: the daemon stopped between consuming it and recording the destroy. Give it back.
 */
async function releaseIfCrashed(
  g: Governance,
  broker: KeyBrokerApi,
  ctx: CallContext,
  id: string,
  op: ApprovalOp,
  target: ApprovalTarget,
): Promise<void> {
  const a = g.approvals.list(target.org, 'executed').find((x) => x.id === id);
  if (
    a === undefined ||
    a.requester !== ctx.identity.uri ||
    a.op !== op ||
    a.tenant !== target.tenant ||
    a.customer !== target.customer
  )
    return;
  // Only while the target is intact: the record precedes the first destruction, so an unrecorded
  // destroy of a live target destroyed nothing.
  if (!(await stillActive(broker, target))) return;
  await g.approvals.release(ctx.identity, id, ctx.requestId, 'no destroy was recorded (interrupted)');
}

async function stillActive(broker: KeyBrokerApi, t: ApprovalTarget): Promise<boolean> {
  const ref = { org: t.org as OrgId, tenant: t.tenant as TenantId };
  try {
    if (t.customer !== undefined) await broker.describeCustomer(ref, t.customer as CustomerId);
    else await broker.describeTenant(ref);
    return true;
  } catch (err) {
    if (toKbError(err).code === 'NOT_FOUND') return false;
    throw err;
  }
}
