/**
 * Which policy a caller's policy calls concern (review M6): admins of the operator org
 * (policy.operatorOrg) the daemon-wide base, every other org's admins only their org's section.
 * Shared by Policy.SetPolicy/GetPolicy and Approvals.RequestApproval (set-policy).
 */
import { KbError } from '../errors.ts';
import type { Governance } from './approvals-service.ts';

/** The policy document limit is enforced by the parser too; this bounds the field first. */
const MAX_POLICY_CHARS = 1024 * 1024;

/** The caller's section (its org), or undefined for the daemon-wide base (operator org). */
export function policySectionOf(g: Governance, who: { readonly org: string }): string | undefined {
  const op = g.operatorOrg?.() ?? '';
  return op !== '' && who.org === op ? undefined : who.org;
}

/** The policy_json field: a non-empty string within the bound. */
export function policyTextField(text: unknown): string {
  if (typeof text !== 'string' || text === '')
    throw new KbError('INVALID_ARGUMENT', 'policy_json: expected a policy document');
  if (text.length > MAX_POLICY_CHARS) throw new KbError('TOO_LARGE', 'policy_json too large');
  return text;
}
