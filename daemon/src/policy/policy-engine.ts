/**
 * The policy engine: one pure function of (identity, tenant, RPC, customer, algorithm, key) to a
 * Decision. Order of evaluation (first deny wins, anything else denies):
 *   1. structural: cross-org and cross-tenant calls, inconsistent identities (before any policy)
 *   2. no policy loaded
 *   3. FIPS mode algorithm refusal            -> ALGORITHM_NOT_ALLOWED
 *   4. Admin RPC role requirement (viewer < operator < admin)
 *   5. explicit deny rules, in document order (a rule on a field the call should carry but does
 *      not applies: fail closed, see outside())
 *   6. the target tenant's ceiling (tenants[]; a missing field is outside it)
 *   7. the first matching allow rule allows; no match denies
 * Any exception while evaluating is a deny ("evaluator error").
 */
import { KbError } from '../errors.ts';
import type { AuthzRequest, Authorizer, Decision, Role } from './authorizer.ts';
import { highestRole, requiredRole, roleRank } from './admin-roles.ts';
import { fipsRefusal } from './fips-policy.ts';
import { matchesAny } from './glob.ts';
import { rpcCarries } from './rpc-fields.ts';
import type { Constraints, Policy } from './policy-document.ts';

const deny = (reason: string, rule: string, code?: Decision['code']): Decision =>
  code === undefined ? { allow: false, reason, rule } : { allow: false, reason, rule, code };

/**
 * The caller's role: when policy role bindings match its URI they decide (so a policy can hold an
 * admin certificate to viewer or operator); otherwise the roles its certificate carries.
 */
export function effectiveRole(
  policy: Policy | undefined,
  uri: string,
  certRoles: readonly Role[],
): Role | undefined {
  const bound: Role[] = [];
  for (const b of policy?.roleBindings ?? []) if (b.identity.test(uri)) bound.push(b.role);
  if (bound.length === 0)
    for (const b of policy?.orgRoleBindings ?? []) if (b.identity.test(uri)) bound.push(b.role);
  return highestRole(bound.length > 0 ? bound : certRoles);
}

/** How a constraint list is read: for an allow rule, a deny rule, or a tenant ceiling. */
type Reading = 'allow' | 'deny' | 'ceiling';

/**
 * Returns the name of the first constraint list the request falls outside of, or undefined (for
 * a deny rule: undefined means the rule applies). A value the call does not carry:
 * - pending (learnt later, authorized then): allow rules and ceilings pass for now, deny rules
 *   wait for the value;
 * - missing from an RPC that acts on the field (rpc-fields.ts): fail closed, so a deny rule
 *   applies and a ceiling refuses; an allow rule does not match (strict);
 * - a field the RPC has nothing to do with: an allow rule does not match, a deny rule does not
 *   apply, a ceiling does not limit.
 */
function outside(c: Constraints, req: AuthzRequest, reading: Reading): string | undefined {
  const checks: [keyof Constraints, string | undefined][] = [
    ['rpcs', req.rpc],
    ['orgs', req.org],
    ['tenants', req.tenant],
    ['customers', req.customer],
    ['algorithms', req.algorithm],
    ['keys', req.keyName],
  ];
  for (const [k, v] of checks) {
    const list = c[k];
    if (list === undefined) continue;
    if (v !== undefined) {
      if (!matchesAny(list, v)) return k;
      continue;
    }
    if ((k === 'customers' || k === 'keys') && req.pending?.includes(k) === true) {
      if (reading === 'deny') return k;
      continue;
    }
    if (reading === 'allow') return k;
    const carried = rpcCarries(req.rpc, k);
    if (reading === 'deny' && !carried) return k;
    if (reading === 'ceiling' && carried) return k;
  }
  return undefined;
}

/** Structural checks that no policy can override. */
function structural(req: AuthzRequest): Decision | undefined {
  const id = req.identity;
  if (typeof id?.uri !== 'string' || typeof req.rpc !== 'string' || req.rpc === '') {
    return deny('malformed authorization request', 'structural:malformed');
  }
  if (id.uri.startsWith('spiffe://')) {
    const segs = id.uri.slice('spiffe://'.length).split('/');
    if (segs[0] !== id.org) return deny('identity URI does not match its org', 'structural:identity');
    if (id.tenant !== undefined && segs[1] !== id.tenant) {
      return deny('identity URI does not match its tenant', 'structural:identity');
    }
  }
  // Tenant names are only unique inside an org: a target tenant must come with its org.
  if (req.tenant !== undefined && req.org === undefined) {
    return deny('target tenant given without its org', 'structural:malformed');
  }
  if (req.org !== undefined && req.org !== id.org) {
    return deny('cross-org call refused', 'structural:cross-org');
  }
  if (id.tenant !== undefined && req.tenant !== undefined && req.tenant !== id.tenant) {
    return deny('cross-tenant call refused', 'structural:cross-tenant');
  }
  return undefined;
}

/**
 * Evaluate one request against one policy. Pure: same inputs, same decision. `forceFips` turns
 * FIPS mode on whatever the document says (daemon config `policy.fipsMode`).
 */
export function evaluatePolicy(policy: Policy | undefined, req: AuthzRequest, forceFips = false): Decision {
  const s = structural(req);
  if (s) return s;
  if (policy === undefined) return deny('no policy loaded', 'no-policy');

  if ((forceFips || policy.fipsMode) && req.algorithm !== undefined) {
    const why = fipsRefusal(req.algorithm);
    if (why !== undefined) return deny(`FIPS mode: ${why}`, 'fips', 'ALGORITHM_NOT_ALLOWED');
  }

  const need = requiredRole(req.rpc, policy.adminRpcRoles);
  if (need !== undefined) {
    const have = effectiveRole(policy, req.identity.uri, req.identity.roles);
    if (roleRank(have) < roleRank(need)) return deny(`${req.rpc} needs role ${need}`, `role:${need}`);
  }

  const uri = req.identity.uri;
  for (const r of policy.rules) {
    if (r.effect === 'deny' && matchesAny(r.identities, uri) && outside(r, req, 'deny') === undefined) {
      return deny(`denied by rule ${r.id}`, r.id);
    }
  }

  if (req.org !== undefined && req.tenant !== undefined) {
    const key = `${req.org}/${req.tenant}`;
    for (const ceiling of [policy.tenants.get(key), policy.orgTenants?.get(key)]) {
      const off = ceiling === undefined ? undefined : outside(ceiling, req, 'ceiling');
      if (off !== undefined) return deny(`outside the tenant's allowed ${off}`, `tenant:${key}`);
    }
  }

  for (const r of policy.rules) {
    if (r.effect === 'allow' && matchesAny(r.identities, uri) && outside(r, req, 'allow') === undefined) {
      return { allow: true, reason: `allowed by rule ${r.id}`, rule: r.id };
    }
  }
  return deny('no rule allows this call', 'no-match');
}

/** Where the engine gets the current policy (a PolicyStore, or a function for tests). */
export interface PolicySource {
  current(): Policy | undefined;
}

/** Most remembered decisions per (policy, identity); a full map starts over. */
const MEMO_PER_IDENTITY = 256;

/** The memo key of a request's target: everything evaluatePolicy reads besides the identity. */
function memoKey(req: AuthzRequest): string {
  return `${req.rpc}\u0000${req.org ?? ''}\u0000${req.tenant ?? ''}\u0000${req.customer ?? ''}\u0000${req.algorithm ?? ''}\u0000${req.keyName ?? ''}\u0000${req.pending?.join(',') ?? ''}`;
}

/**
 * The Authorizer the daemon uses: evaluates every call against the source's current policy.
 * evaluatePolicy is pure, so decisions are remembered per compiled policy object and identity
 * object (the call gate keeps one identity per TLS connection): a new policy is a new object and
 * starts with no memory, and both maps are weak, so nothing outlives its policy or connection.
 */
export class PolicyEngine implements Authorizer {
  readonly #source: PolicySource;
  readonly #forceFips: boolean;
  readonly #memo = new WeakMap<Policy, WeakMap<AuthzRequest['identity'], Map<string, Decision>>>();

  /** `o.fipsMode` forces FIPS mode on (config); off leaves it to the policy document. */
  constructor(source: PolicySource, o: { readonly fipsMode?: boolean } = {}) {
    this.#source = source;
    this.#forceFips = o.fipsMode === true;
  }

  authorize(req: AuthzRequest): Decision {
    try {
      const policy = this.#source.current();
      if (policy === undefined || typeof req.identity !== 'object' || req.identity === null) {
        return evaluatePolicy(policy, req, this.#forceFips);
      }
      let byIdentity = this.#memo.get(policy);
      if (byIdentity === undefined) {
        byIdentity = new WeakMap();
        this.#memo.set(policy, byIdentity);
      }
      let decisions = byIdentity.get(req.identity);
      if (decisions === undefined) {
        decisions = new Map();
        byIdentity.set(req.identity, decisions);
      }
      const key = memoKey(req);
      const known = decisions.get(key);
      if (known !== undefined) return known;
      const d = evaluatePolicy(policy, req, this.#forceFips);
      if (decisions.size >= MEMO_PER_IDENTITY) decisions.clear();
      decisions.set(key, d);
      return d;
    } catch {
      // Fail closed; the cause is a bug or a corrupt policy object, never the caller's business.
      return deny('policy evaluation failed', 'evaluator-error');
    }
  }

  /** Whether FIPS mode is on in the current policy (for health and metrics). */
  get fipsMode(): boolean {
    if (this.#forceFips) return true;
    try {
      return this.#source.current()?.fipsMode ?? false;
    } catch {
      return false;
    }
  }
}

/** The KbError for a deny decision (PERMISSION_DENIED unless the decision names another code). */
export function decisionError(d: Decision): KbError {
  return new KbError(d.code ?? 'PERMISSION_DENIED', d.reason);
}
