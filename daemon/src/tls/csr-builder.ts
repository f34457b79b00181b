/**
 * A fresh key pair and a PKCS#10 request for it (`keybroker cert issue|renew`): the private key
 * never leaves the host that asks; the broker's CA sees only the CSR.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export type CsrAlgorithm = 'ecdsa-p256' | 'mldsa65';

const PARAMS = {
  'ecdsa-p256': { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  mldsa65: { name: 'ML-DSA-65' },
} as const;

function pem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
}

/** New key (PKCS#8 PEM) and CSR (PEM); `uri` goes into the CSR's SAN when given. */
export async function makeKeyAndCsr(
  alg: CsrAlgorithm,
  uri?: string,
): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(PARAMS[alg], true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=keybroker client',
    keys,
    signingAlgorithm: PARAMS[alg],
    extensions:
      uri === undefined ? [] : [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])],
  });
  const keyPem = pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { keyPem, csrPem: csr.toString('pem') + '\n' };
}
