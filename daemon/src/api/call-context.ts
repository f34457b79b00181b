/**
 * The CallContext an allowed handler gets: its id, identity, deadline signal, a lazy logger and
 * the later authorization checks (per customer, per key).
 */
import type { CustomerId } from '../ids.ts';
import type { Authorizer, CallerIdentity, Decision } from '../policy/authorizer.ts';
import type { Logger } from '../obs/logger.ts';
import type { AuditFacts, CallContext, CallTarget } from './call-gate.ts';
import type { Begun } from './call-deadline.ts';

/** The context of an allowed call; throws the abort reason if the call was already abandoned. */
export function callContext(
  authorizer: () => Authorizer,
  root: Logger,
  rpc: string,
  begun: Begun,
  identity: CallerIdentity,
  target: CallTarget,
  facts: AuditFacts,
): CallContext {
  if (begun.reason !== undefined) throw begun.reason;
  let log: Logger | undefined;
  // The gate's target without its pending fields: these checks supply them.
  const { pending: _pending, ...known } = target;
  const authorize = (extra: { customer?: CustomerId; keyName?: string; algorithm?: string }) =>
    authorizer().authorize({ identity, rpc, ...known, ...extra });
  // A batch asks once per customer, not once per item.
  const byCustomer = new Map<CustomerId, Decision>();
  return {
    authorizeCustomer: (customer) => {
      let d = byCustomer.get(customer);
      if (d === undefined) {
        (facts.customers ??= new Set()).add(customer);
        d = authorize({ customer });
        byCustomer.set(customer, d);
      }
      if (!d.allow) facts.refusal = d;
      return d;
    },
    mayUseKey: (keyName, algorithm) => {
      const d = authorize(algorithm === undefined ? { keyName } : { keyName, algorithm });
      // FIPS mode refuses using a key, not seeing it: then the rules on its name decide.
      return d.allow || (d.code === 'ALGORITHM_NOT_ALLOWED' && authorize({ keyName }).allow);
    },
    requestId: begun.requestId,
    rpc,
    identity,
    // Made on first use: most calls never log beyond their request line.
    get log() {
      return (log ??= root.child({ requestId: begun.requestId }));
    },
    deadline: begun.deadline,
    // Made on first use too: only streaming handlers watch the signal.
    get signal() {
      if (begun.ac === undefined) {
        begun.ac = new AbortController();
        if (begun.reason !== undefined) begun.ac.abort(begun.reason);
      }
      return begun.ac.signal;
    },
  };
}
