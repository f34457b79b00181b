/**
 * keybroker.v1.Policy: read or replace the caller's policy. Admins of the operator org
 * (policy.operatorOrg) read and replace the daemon-wide base; any other org's admins only their
 * org's section (policy/org-policy.ts). The new text is validated first (a bad policy never asks
 * for or consumes an approval); with the two-person rule on, an approval for exactly its SHA-256
 * is then consumed, and it is swapped in atomically (policy/policy-change.ts).
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import { DEFAULT_POLICY_TEXT } from '../policy/default-policy.ts';
import { EMPTY_SECTION_TEXT } from '../policy/org-policy.ts';
import { applyApprovedPolicy, policyDigest, validatePolicyFor } from '../policy/policy-change.ts';
import type { Governance } from './approvals-service.ts';
import type { CallGate } from './call-gate.ts';
import { policySectionOf, policyTextField } from './policy-scope.ts';

const RPC = 'keybroker.v1.Policy/';

/** Build the Policy service implementation. */
export function policyService(gate: CallGate, g: Governance): UntypedServiceImplementation {
  type Req = Record<string, unknown>;
  return {
    GetPolicy: gate.unary<Req, object>(`${RPC}GetPolicy`, {
      target: (id) => ({ org: id.org }),
      handle: (ctx) => {
        const section = policySectionOf(g, ctx.identity);
        const own = section === undefined ? undefined : g.policy.sectionText(section);
        const text =
          section === undefined ? (g.policy.text() ?? DEFAULT_POLICY_TEXT) : (own ?? EMPTY_SECTION_TEXT);
        return Promise.resolve({
          policyJson: text,
          policySha256: policyDigest(text),
          fipsMode: g.fipsMode(),
          source: section === undefined ? g.policy.origin() : own === undefined ? 'default' : 'api',
        });
      },
    }),
    SetPolicy: gate.unary<Req, object>(`${RPC}SetPolicy`, {
      mutating: true,
      target: (id) => ({ org: id.org }),
      handle: async (ctx, r, facts) => {
        const text = policyTextField(r.policyJson);
        const section = policySectionOf(g, ctx.identity);
        // Validated before anything else: a bad document never asks for an approval.
        validatePolicyFor(section, text);
        const where = section === undefined ? 'daemon-wide policy' : `policy of org ${section}`;
        if (!g.twoPersonRule()) {
          g.persistPolicy(text, section);
          const swap =
            section === undefined ? g.policy.replace(text, 'api') : g.policy.replaceSection(section, text);
          facts.reason = `${where} ${swap.digest} replaced ${swap.previousDigest ?? 'none'}`;
          return { policySha256: swap.digest, previousPolicySha256: swap.previousDigest ?? '' };
        }
        const id = r.approvalId;
        if (typeof id !== 'string' || id === '')
          throw new KbError('APPROVAL_REQUIRED', 'change-policy needs an approval by a second admin');
        const swap = await applyApprovedPolicy({
          store: g.policy,
          approvals: g.approvals,
          who: ctx.identity,
          approvalId: id,
          text,
          requestId: ctx.requestId,
          persist: (t) => g.persistPolicy(t, section),
          ...(section !== undefined ? { section } : {}),
        });
        facts.reason = `${swap.step.record.reason}: ${where} ${swap.digest}`;
        return { policySha256: swap.digest, previousPolicySha256: swap.previousDigest ?? '' };
      },
    }),
  };
}
