/**
 * Who is calling, from the verified mTLS client certificate only. The SAN URI must be
 * spiffe://<org>/<tenant>/<service> (a service of a tenant) or spiffe://<org>/admin/<name>
 * (an admin of the org). Anything else is UNAUTHENTICATED.
 */
import type { PeerCertificate } from 'node:tls';
import { KbError } from '../errors.ts';
import { orgId, tenantId } from '../ids.ts';
import type { TenantRef } from '../ids.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';

const SEGMENT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** The tenant name that marks admin identities; no tenant may take it. */
export const ADMIN_SEGMENT = 'admin';

function spiffeUris(cert: PeerCertificate): string[] {
  const san = cert.subjectaltname ?? '';
  // Node renders SANs as `URI:spiffe://a/b/c, DNS:x`; values with ", " inside are quoted JSON.
  return san
    .split(', ')
    .filter((p) => p.startsWith('URI:'))
    .map((p) => p.slice(4))
    .map((v) => (v.startsWith('"') ? (JSON.parse(v) as string) : v))
    .filter((v) => v.startsWith('spiffe://'));
}

/** Parse one spiffe:// URI into an identity; undefined when it is not of a shape we accept. */
export function parseSpiffeUri(uri: string): CallerIdentity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, org, second, service] = m as unknown as [string, string, string, string];
  if (!SEGMENT.test(org) || !SEGMENT.test(second) || !SEGMENT.test(service)) return undefined;
  if (second === ADMIN_SEGMENT) {
    return { uri, org: orgId(org), service, roles: ['admin'] };
  }
  return { uri, org: orgId(org), tenant: tenantId(second), service, roles: [] };
}

/** Extended key usage TLS WWW client authentication (RFC 5280 4.2.1.12). */
export const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';

/**
 * The caller's identity from its peer certificate; exactly one spiffe:// URI is accepted, and
 * the certificate must name the clientAuth EKU: OpenSSL's client purpose check only looks at an
 * EKU that is present, so a certificate without one (or a CA's server certificate) would pass.
 */
export function callerIdentityOf(cert: PeerCertificate | undefined): CallerIdentity {
  if (cert === undefined || cert.raw === undefined) {
    throw new KbError('UNAUTHENTICATED', 'a client certificate is required');
  }
  if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH_EKU)) {
    throw new KbError(
      'UNAUTHENTICATED',
      'the client certificate must have the clientAuth extended key usage',
      {
        detail: `extended key usage: ${(cert.ext_key_usage ?? []).join(',') || 'none'}`,
      },
    );
  }
  const uris = spiffeUris(cert);
  if (uris.length !== 1) {
    throw new KbError('UNAUTHENTICATED', 'the client certificate must carry exactly one spiffe:// URI');
  }
  const id = parseSpiffeUri(uris[0] as string);
  if (id === undefined) {
    throw new KbError('UNAUTHENTICATED', 'spiffe URI must be spiffe://<org>/<tenant>/<service>');
  }
  return id;
}

/** The caller's own tenant: the only one a data-plane call can reach. */
export function ownTenant(id: CallerIdentity): TenantRef {
  if (id.tenant === undefined) throw new KbError('PERMISSION_DENIED', 'a tenant identity is required');
  return { org: id.org, tenant: id.tenant };
}
