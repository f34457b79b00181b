/**
 * Which request fields an RPC acts on, so that a deny rule or tenant ceiling constraining a field
 * the call should carry but does not fails closed (the rule applies, the ceiling refuses), while
 * one constraining a field the RPC has nothing to do with (a customer list on Admin/ListTenants)
 * leaves it alone. An RPC of no known service carries every field: unknown means closed.
 */
import type { Constraints } from './policy-document.ts';

type Field = keyof Constraints;

const CRYPTO = 'keybroker.v1.Crypto/';
const KEYS = 'keybroker.v1.Keys/';
const KNOWN = [CRYPTO, KEYS, 'keybroker.v1.Admin/', 'keybroker.v1.Approvals/', 'keybroker.v1.Policy/'];
/** Keys RPCs that name no single key: their keys are authorized one by one (the list is filtered). */
const KEY_LISTS: ReadonlySet<string> = new Set([`${KEYS}ListKeys`, `${KEYS}GetJwks`]);

/** Whether `rpc` acts on `field` (so an absent value is a missing value, not an irrelevant one). */
export function rpcCarries(rpc: string, field: Field): boolean {
  if (!KNOWN.some((p) => rpc.startsWith(p))) return true;
  switch (field) {
    case 'rpcs':
    case 'orgs':
      return true;
    case 'tenants':
      return rpc.startsWith(CRYPTO) || rpc.startsWith(KEYS);
    // Every Crypto call is for a customer ("default" when the request names none). Keys may be
    // tenant-level (no customer): a customer list does not reach them.
    case 'customers':
      return rpc.startsWith(CRYPTO);
    case 'keys':
    case 'algorithms':
      return rpc.startsWith(KEYS) && !KEY_LISTS.has(rpc);
  }
}
