/** The audit record of one approval step (refusals too). */
import type { AuditRecordInput } from '../audit/audit-sink.ts';
import type { CallerIdentity } from './authorizer.ts';
import type { Approval } from './approval.ts';

/** What a step reports for its audit record. */
export interface StepRecord {
  readonly who: CallerIdentity;
  readonly rpc: string;
  readonly requestId: string;
  readonly result: 'ok' | 'denied';
  readonly code?: AuditRecordInput['code'];
  readonly reason: string;
  readonly approval?: Approval;
  readonly org?: string;
}

/** The audit record of step `r`, made at `nowMs`. */
export function approvalStepRecord(nowMs: number, r: StepRecord): AuditRecordInput {
  const a = r.approval;
  const org = a?.org ?? r.org;
  return {
    time: new Date(nowMs),
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
