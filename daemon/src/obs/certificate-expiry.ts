/**
 * notAfter of the certificates an operator must renew in time: the server's TLS certificate
 * (read from tls.certFile at each scrape, so a renewed file shows at once) and the org CAs the
 * broker issues from. Exported as keybroker_certificate_not_after_seconds.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface CertificateExpiry {
  readonly cert: 'server' | 'org_ca';
  /** The certificate's subject common name (bounded: one server, one CA per org generation). */
  readonly subject: string;
  readonly notAfterMs: number;
}

function expiry(cert: CertificateExpiry['cert'], pem: string | Buffer): CertificateExpiry {
  const x = new X509Certificate(pem);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1] ?? x.subject;
  return { cert, subject: cn, notAfterMs: Date.parse(x.validTo) };
}

/** The server certificate's and the org CAs' notAfter; a file that cannot be read is left out. */
export function certificateExpiries(
  serverCertFile: string,
  orgCaPems: readonly string[],
): CertificateExpiry[] {
  const out: CertificateExpiry[] = [];
  try {
    out.push(expiry('server', readFileSync(serverCertFile)));
  } catch (err) {
    // Mid-rotation or unreadable: the gauge goes absent, which the absent() alert rule reports.
    void err;
  }
  for (const pem of orgCaPems) out.push(expiry('org_ca', pem));
  return out;
}
