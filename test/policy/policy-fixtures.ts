// Shared fixtures for the policy tests: identities, a realistic policy, and every RPC in the protos.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CallerIdentity, Role } from '../../daemon/src/policy/authorizer.ts';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';

/** A caller as the mTLS layer would build it. */
export function caller(uri: string, roles: readonly Role[] = []): CallerIdentity {
  const [org, second, service] = uri.slice('spiffe://'.length).split('/');
  const isAdmin = second === 'admin';
  return {
    uri,
    org: org as OrgId,
    ...(isAdmin ? {} : { tenant: second as TenantId }),
    service: isAdmin ? `admin/${service}` : (service ?? ''),
    roles,
  };
}

/** Every "keybroker.v1.<Service>/<Method>" declared in proto/keybroker/v1/*.proto. */
export function allRpcs(): string[] {
  const dir = join(REPO_ROOT, 'proto/keybroker/v1');
  const out: string[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.proto'))) {
    let service = '';
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      const s = /^\s*service\s+(\w+)/.exec(line);
      if (s) service = s[1] ?? '';
      const r = /^\s*rpc\s+(\w+)/.exec(line);
      if (r && service) out.push(`keybroker.v1.${service}/${r[1]}`);
    }
  }
  return out;
}

export const BASE_POLICY = {
  version: 1,
  rules: [
    {
      id: 't1-billing-no-decrypt',
      effect: 'deny',
      identities: ['spiffe://acme/t1/billing'],
      rpcs: ['keybroker.v1.Crypto/Decrypt*'],
    },
    {
      id: 't1-crypto',
      effect: 'allow',
      identities: ['spiffe://acme/t1/*'],
      rpcs: ['keybroker.v1.Crypto/*'],
      customers: ['default', 'c1'],
    },
    { id: 't2-crypto', effect: 'allow', identities: ['spiffe://acme/t2/*'], rpcs: ['keybroker.v1.Crypto/*'] },
    {
      id: 'acme-admins',
      effect: 'allow',
      identities: ['spiffe://acme/admin/*'],
      rpcs: ['keybroker.v1.Admin/*'],
    },
  ],
  tenants: [{ org: 'acme', tenant: 't1', algorithms: ['AES-256-GCM', 'ML-KEM-768'] }],
  roleBindings: [
    { identity: 'spiffe://acme/admin/alice', role: 'admin' },
    { identity: 'spiffe://acme/admin/olga', role: 'operator' },
    { identity: 'spiffe://acme/admin/vic', role: 'viewer' },
  ],
};

/** A policy that allows everything to everyone: structural rules must still refuse. */
export const ALLOW_ALL_POLICY = {
  version: 1,
  rules: [{ id: 'allow-all', effect: 'allow', identities: ['**'], rpcs: ['**'] }],
  roleBindings: [{ identity: '**', role: 'admin' }],
};
