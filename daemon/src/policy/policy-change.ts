/**
 * A policy change under the two-person rule: the new text is validated first (a bad policy never
 * consumes an approval), then the approval for exactly this text (by SHA-256) is executed, then
 * the policy is swapped in atomically. If it cannot be made durable the approval is released.
 */
import { createHash } from 'node:crypto';
import { toKbError } from '../errors.ts';
import type { ApprovalStep } from './approval.ts';
import type { ApprovalStore } from './approvals.ts';
import type { CallerIdentity } from './authorizer.ts';
import { loadOrgSection } from './org-policy.ts';
import { loadPolicy } from './policy-document.ts';
import type { PolicyStore, PolicySwap } from './policy-store.ts';

/** SHA-256 (hex) of a policy text: what a change-policy approval binds. */
export function policyDigest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export interface PolicyChange {
  readonly store: PolicyStore;
  readonly approvals: ApprovalStore;
  readonly who: CallerIdentity;
  readonly approvalId: string;
  readonly text: string;
  readonly requestId: string;
  /** Makes the text durable after the approval is consumed and before it takes effect. */
  readonly persist?: (text: string) => void;
  /** The org whose section this replaces; absent: the daemon-wide base (operator org). */
  readonly section?: string;
}

/** Validate `text` for where it goes: `section`'s org (confined to it), or the daemon-wide base. */
export function validatePolicyFor(section: string | undefined, text: string): void {
  if (section === undefined) loadPolicy(text);
  else loadOrgSection(section, text);
}

/** Apply an approved policy text; throws (and changes nothing) if it is invalid or not approved. */
export async function applyApprovedPolicy(c: PolicyChange): Promise<PolicySwap & { step: ApprovalStep }> {
  validatePolicyFor(c.section, c.text);
  const step = await c.approvals.execute(
    c.who,
    c.approvalId,
    'change-policy',
    { org: c.who.org, payloadDigest: policyDigest(c.text) },
    c.requestId,
  );
  try {
    c.persist?.(c.text);
    const swap =
      c.section === undefined ? c.store.replace(c.text) : c.store.replaceSection(c.section, c.text);
    return { ...swap, step };
  } catch (err) {
    // Not applied (the file could not be written): the approval can be used again.
    await c.approvals.release(c.who, c.approvalId, c.requestId, toKbError(err).code).catch(() => undefined);
    throw err;
  }
}
