/**
 * keybroker.v1.Policy: read the policy in force, or replace it. With the two-person rule on, the
 * new text is validated, then an approval for exactly its SHA-256 is consumed, then it is swapped
 * in atomically (policy/policy-change.ts); a bad policy never consumes an approval.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import { DEFAULT_POLICY_TEXT } from '../policy/default-policy.ts';
import { applyApprovedPolicy, policyDigest } from '../policy/policy-change.ts';
import { loadPolicy } from '../policy/policy-document.ts';
import type { Governance } from './approvals-service.ts';
import type { CallGate } from './call-gate.ts';

const RPC = 'keybroker.v1.Policy/';
/** The policy document limit is enforced by the parser too; this bounds the field first. */
const MAX_POLICY_CHARS = 1024 * 1024;

/** Build the Policy service implementation. */
export function policyService(gate: CallGate, g: Governance): UntypedServiceImplementation {
  type Req = Record<string, unknown>;
  return {
    GetPolicy: gate.unary<Req, object>(`${RPC}GetPolicy`, {
      target: (id) => ({ org: id.org }),
      handle: () => {
        const text = g.policy.text() ?? DEFAULT_POLICY_TEXT;
        return Promise.resolve({
          policyJson: text,
          policySha256: policyDigest(text),
          fipsMode: g.fipsMode(),
          source: g.policy.origin(),
        });
      },
    }),
    SetPolicy: gate.unary<Req, object>(`${RPC}SetPolicy`, {
      mutating: true,
      target: (id) => ({ org: id.org }),
      handle: async (ctx, r, facts) => {
        const text = r.policyJson;
        if (typeof text !== 'string' || text === '')
          throw new KbError('INVALID_ARGUMENT', 'policy_json: expected a policy document');
        if (text.length > MAX_POLICY_CHARS) throw new KbError('TOO_LARGE', 'policy_json too large');
        if (!g.twoPersonRule()) {
          loadPolicy(text);
          g.persistPolicy(text);
          const swap = g.policy.replace(text, 'api');
          facts.reason = `policy ${swap.digest} replaced ${swap.previousDigest ?? 'none'}`;
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
          persist: g.persistPolicy,
        });
        facts.reason = `${swap.step.record.reason}: policy ${swap.digest}`;
        return { policySha256: swap.digest, previousPolicySha256: swap.previousDigest ?? '' };
      },
    }),
  };
}
