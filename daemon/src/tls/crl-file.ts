/**
 * Certificate revocation lists (tls.crlFile: one or more PEM CRLs). Each must be signed by a CA
 * of the trust bundle and still be current: a CRL nobody we trust signed is refused outright, so
 * a stray or forged file can neither revoke nor silently replace the real list.
 */
import 'reflect-metadata';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { ConfigError } from '../config/load-config.ts';
import { revocationKey } from './revocation-set.ts';

x509.cryptoProvider.set(globalThis.crypto);

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const PEM_CRL = /-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g;

/** The revocations of a set of CRLs, checked against the bundle. */
export interface LoadedCrls {
  /** revocationKey(issuer, serial) of every revoked certificate. */
  readonly keys: ReadonlySet<string>;
  /**
   * The CRLs for the TLS handshake, or undefined when some CA of the bundle has none: given any
   * CRL, Node turns on OpenSSL's CRL_CHECK_ALL, which would then refuse every certificate of the
   * uncovered CAs ("unable to get certificate CRL").
   */
  readonly tlsCrls: readonly string[] | undefined;
  /** One line per CRL for the log: issuer, entries, next update. */
  readonly summary: readonly { issuer: string; revoked: number; nextUpdate: string | undefined }[];
}

/** The certificates of a PEM bundle. */
export function pemCertificates(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

/**
 * Verify and index PEM CRLs against the CA bundle. Throws ConfigError (naming `field`) for a CRL
 * that does not parse, is signed by no CA of the bundle, or is past its nextUpdate.
 */
export async function loadCrls(
  crlPems: readonly string[],
  caPems: readonly string[],
  field = 'tls.crlFile',
  now: Date = new Date(),
): Promise<LoadedCrls> {
  const cas = caPems.map((pem) => ({ peculiar: new x509.X509Certificate(pem), node: new NodeX509(pem) }));
  const keys = new Set<string>();
  const covered = new Set<number>();
  const summary: { issuer: string; revoked: number; nextUpdate: string | undefined }[] = [];
  for (const [i, pem] of crlPems.entries()) {
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(pem);
    } catch (err) {
      throw new ConfigError(`${field}: CRL #${i + 1} does not parse (${(err as Error).message})`);
    }
    let signer = -1;
    for (const [j, ca] of cas.entries()) {
      if (crl.issuer !== ca.peculiar.subject) continue;
      const ok = await crl.verify({ publicKey: ca.peculiar }).catch(() => false);
      if (ok) {
        signer = j;
        break;
      }
    }
    if (signer < 0) {
      throw new ConfigError(
        `${field}: CRL #${i + 1} (issuer "${crl.issuer}") is not signed by any CA of tls.caFile; refused`,
      );
    }
    if (crl.nextUpdate !== undefined && crl.nextUpdate.getTime() <= now.getTime()) {
      throw new ConfigError(
        `${field}: CRL #${i + 1} (issuer "${crl.issuer}") expired at ${crl.nextUpdate.toISOString()}; issue a fresh one`,
      );
    }
    covered.add(signer);
    const issuer = (cas[signer] as (typeof cas)[number]).node.subject;
    for (const e of crl.entries) keys.add(revocationKey(issuer, e.serialNumber));
    summary.push({
      issuer: crl.issuer,
      revoked: crl.entries.length,
      nextUpdate: crl.nextUpdate?.toISOString(),
    });
  }
  const everyCa = crlPems.length > 0 && cas.every((_, j) => covered.has(j));
  return { keys, tlsCrls: everyCa ? [...crlPems] : undefined, summary };
}

/** Read and verify tls.crlFile (empty path: no CRL). */
export async function loadCrlFile(crlFile: string, caFile: string): Promise<LoadedCrls> {
  if (crlFile === '') return { keys: new Set(), tlsCrls: undefined, summary: [] };
  let text: string;
  try {
    text = readFileSync(crlFile, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `tls.crlFile: cannot read ${crlFile}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  const crls = text.match(PEM_CRL) ?? [];
  if (crls.length === 0) throw new ConfigError(`tls.crlFile: ${crlFile} holds no PEM "X509 CRL" block`);
  return loadCrls(crls, pemCertificates(readFileSync(caFile, 'utf8')));
}
