/** An approval of the two-person rule: what it is for, its states, and a step's outcome. */
import type { AuditPosition, AuditRecordInput } from '../audit/audit-sink.ts';

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
