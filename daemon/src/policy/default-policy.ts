/**
 * The policy in force when no policy file is configured, as a document, so that every call still
 * goes through the one PolicyEngine: tenant services may use the data plane on their own tenant
 * (the structural rule keeps them there), org admins may use Admin RPCs on their own org with the
 * roles their certificates carry, and nothing else is allowed.
 */
import { loadPolicy } from './policy-document.ts';
import type { Policy } from './policy-document.ts';

/** The built-in policy document (JSON text). */
export const DEFAULT_POLICY_TEXT = JSON.stringify({
  version: 1,
  rules: [
    {
      id: 'default/admins-no-data-plane',
      effect: 'deny',
      identities: ['spiffe://*/admin/*'],
      rpcs: [
        'keybroker.v1.Crypto/*',
        'keybroker.v1.Keys/*',
        'keybroker.v1.BlindIndexes/*',
        'keybroker.v1.Secrets/*',
      ],
    },
    {
      id: 'default/data-plane',
      effect: 'allow',
      identities: ['spiffe://*/*/*'],
      rpcs: [
        'keybroker.v1.Crypto/*',
        'keybroker.v1.Keys/*',
        'keybroker.v1.BlindIndexes/*',
        'keybroker.v1.Secrets/*',
      ],
    },
    {
      id: 'default/admin',
      effect: 'allow',
      identities: ['spiffe://*/admin/*'],
      rpcs: [
        'keybroker.v1.Admin/*',
        'keybroker.v1.Approvals/*',
        'keybroker.v1.Policy/*',
        'keybroker.v1.Certificates/*',
      ],
    },
    {
      // Services renew their own certificate and fetch their org's CA; the service checks whose.
      id: 'default/certificates-self',
      effect: 'allow',
      identities: ['spiffe://*/*/*'],
      rpcs: ['keybroker.v1.Certificates/IssueCertificate', 'keybroker.v1.Certificates/GetCa'],
    },
  ],
});

/** The built-in policy, compiled. */
export function defaultPolicy(): Policy {
  return loadPolicy(DEFAULT_POLICY_TEXT);
}
