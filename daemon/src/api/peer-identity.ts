/**
 * A verified client certificate as the call gate keeps it per TLS connection: the identity plus
 * what must be re-checked on every call (expiry, revocation), because an HTTP/2 connection can
 * outlive both the certificate and the decision to trust it.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { KbError } from '../errors.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import { callerIdentityOf } from './caller-identity.ts';

export interface PeerIdentity {
  readonly identity: CallerIdentity;
  /** Issuer name as Node prints it, and serial in upper-case hex: the revocation key. */
  readonly issuer: string;
  readonly serial: string;
  /** The certificate's notAfter, epoch ms. */
  readonly notAfterMs: number;
}

/** Is (issuer, serial) revoked now? */
export type RevocationCheck = (issuer: string, serial: string) => boolean;

/** Identity, issuer, serial and expiry of a peer certificate; throws UNAUTHENTICATED. */
export function peerIdentityOf(cert: PeerCertificate | undefined): PeerIdentity {
  const identity = callerIdentityOf(cert);
  const x = new X509Certificate((cert as PeerCertificate).raw);
  return { identity, issuer: x.issuer, serial: x.serialNumber, notAfterMs: x.validToDate.getTime() };
}

/** Why a cached peer may no longer call (expired, revoked), or undefined while it may. */
export function peerRefusal(p: PeerIdentity, now: number, revoked?: RevocationCheck): KbError | undefined {
  if (now >= p.notAfterMs) {
    return new KbError('UNAUTHENTICATED', 'the client certificate has expired', {
      detail: `serial ${p.serial} expired at ${new Date(p.notAfterMs).toISOString()}`,
    });
  }
  if (revoked?.(p.issuer, p.serial) === true) {
    return new KbError('UNAUTHENTICATED', 'the client certificate is revoked', {
      detail: `serial ${p.serial} of ${p.issuer.replaceAll('\n', ', ')} is revoked`,
    });
  }
  return undefined;
}
