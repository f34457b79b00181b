/**
 * The built-in policy until a policy document is configured: admins (spiffe://<org>/admin/<name>)
 * may call Admin RPCs on their own org; tenant services may call Crypto and Keys RPCs on their own tenant;
 * everything else is denied. Fail-closed.
 */
import type { AuthzRequest, Authorizer, Decision } from '../policy/authorizer.ts';

const ADMIN = 'keybroker.v1.Admin/';
const CRYPTO = 'keybroker.v1.Crypto/';
const KEYS = 'keybroker.v1.Keys/';

export class DefaultAuthorizer implements Authorizer {
  authorize(req: AuthzRequest): Decision {
    const id = req.identity;
    if (req.rpc.startsWith(ADMIN)) {
      if (!id.roles.includes('admin')) return deny('admin identity required', 'admin-only');
      if (req.org !== undefined && req.org !== id.org)
        return deny('admins act on their own org only', 'own-org');
      return { allow: true, reason: 'org admin', rule: 'default/admin' };
    }
    if (req.rpc.startsWith(CRYPTO) || req.rpc.startsWith(KEYS)) {
      if (id.tenant === undefined) return deny('a tenant identity is required', 'tenant-only');
      if (req.org !== id.org || req.tenant !== id.tenant) return deny('own tenant only', 'own-tenant');
      return { allow: true, reason: 'own tenant', rule: 'default/data-plane' };
    }
    return deny('unknown rpc', 'default-deny');
  }
}

function deny(reason: string, rule: string): Decision {
  return { allow: false, reason, rule: `default/${rule}` };
}
