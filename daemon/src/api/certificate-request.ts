/**
 * What a CSR may ask for (Certificates.IssueCertificate). The CSR contributes its public key and
 * nothing else: its signature must verify (proof of possession), its key must be ECDSA P-256 or
 * ML-DSA-65, and anything it requests beyond that is either exactly what will be issued anyway
 * (one spiffe:// URI) or refused (a CA flag, other names, two URIs), never silently dropped.
 */
import 'reflect-metadata';
import { createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { KbError } from '../errors.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** CSRs larger than this are refused before parsing (an ML-DSA-65 CSR is ~5.5 KB in PEM). */
export const MAX_CSR_CHARS = 32 * 1024;

export interface CheckedCsr {
  readonly spki: Uint8Array;
  /** 'ecdsa-p256' or 'mldsa65'. */
  readonly keyAlgorithm: string;
  /** The one spiffe:// URI the CSR names, if it names one. */
  readonly uri: string | undefined;
}

const bad = (why: string) => new KbError('INVALID_ARGUMENT', `csr_pem: ${why}`);

function keyAlgorithmOf(spki: Uint8Array): string {
  const k = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    return 'ecdsa-p256';
  if (k.asymmetricKeyType === 'ml-dsa-65') return 'mldsa65';
  throw bad(`key type ${k.asymmetricKeyType ?? 'unknown'} not accepted (ECDSA P-256 or ML-DSA-65)`);
}

/** Parse and check a CSR; throws INVALID_ARGUMENT naming what is wrong. */
export async function checkCsr(pem: unknown): Promise<CheckedCsr> {
  if (typeof pem !== 'string' || pem === '') throw bad('expected a PEM certificate request');
  if (pem.length > MAX_CSR_CHARS) throw new KbError('TOO_LARGE', `csr_pem over ${MAX_CSR_CHARS} characters`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw bad('not a PKCS#10 certificate request');
  }
  const spki = new Uint8Array(csr.publicKey.rawData);
  const keyAlgorithm = keyAlgorithmOf(spki);
  const verified = await csr.verify().catch(() => false);
  if (!verified) throw bad('signature does not verify (proof of possession failed)');
  let uri: string | undefined;
  for (const ext of csr.extensions) {
    if (ext instanceof x509.BasicConstraintsExtension) {
      if (ext.ca) throw bad('a CA certificate cannot be requested');
    } else if (ext instanceof x509.SubjectAlternativeNameExtension) {
      const names = ext.names.items;
      const uris = names.filter((n) => n.type === 'url');
      if (uris.length !== names.length)
        throw bad('only a spiffe:// URI may be requested as subject alternative name');
      if (uris.length !== 1) throw bad('exactly one spiffe:// URI may be requested');
      uri = (uris[0] as x509.GeneralName).value;
    }
  }
  return { spki, keyAlgorithm, uri };
}
