/**
 * A private CA and leaf certificates for development and tests (`keybroker init`, the test
 * harness). Production deployments bring their own PKI; these files only need the same shape:
 * a CA bundle, a server cert for the API address, and client certs with a spiffe:// SAN URI.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

/** Signature algorithm of the dev PKI. ML-DSA-65 needs OpenSSL >= 3.5 on both ends. */
export type PkiAlgorithm = 'ecdsa-p256' | 'mldsa65';

export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface DevCa extends PemPair {
  readonly algorithm: PkiAlgorithm;
  /** Issue a leaf certificate signed by this CA. */
  issue(opts: LeafOptions): Promise<PemPair>;
  /** A PEM CRL of this CA revoking the given serials (hex), valid for `days` (default 7). */
  crl(serials: readonly string[], days?: number): Promise<string>;
}

export interface LeafOptions {
  readonly commonName: string;
  /** SAN URIs, e.g. spiffe://acme/tenant-a/app. */
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  /** Extended key usage; 'none' leaves the extension out (tests of the clientAuth check). */
  readonly usage: 'server' | 'client' | 'none';
  readonly days?: number;
  /** Exact notAfter (overrides `days`). */
  readonly notAfter?: Date;
  /** Leaf key algorithm; defaults to the CA's. */
  readonly algorithm?: PkiAlgorithm;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const MLDSA = { name: 'ML-DSA-65' } as const;
const algParams = (a: PkiAlgorithm) => (a === 'ecdsa-p256' ? EC : MLDSA);

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive INTEGER
  return b.toString('hex');
}

async function generateKeys(alg: PkiAlgorithm): Promise<webcrypto.CryptoKeyPair> {
  return (await crypto.subtle.generateKey(algParams(alg), true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

const window = (days: number) => {
  const notBefore = new Date(Date.now() - 60_000); // tolerate small clock skew
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
};

/** Create a self-signed CA valid for `days` (default 10 years). */
export async function createDevCa(
  name: string,
  algorithm: PkiAlgorithm = 'ecdsa-p256',
  days = 3650,
): Promise<DevCa> {
  const keys = await generateKeys(algorithm);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    ...window(days),
    signingAlgorithm: algParams(algorithm),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return caFrom(ca, keys.privateKey, algorithm, ca.toString('pem') + '\n', await keyPem(keys.privateKey));
}

function caFrom(
  ca: x509.X509Certificate,
  caKey: webcrypto.CryptoKey,
  algorithm: PkiAlgorithm,
  certPem: string,
  caKeyPem: string,
): DevCa {
  return {
    algorithm,
    certPem,
    keyPem: caKeyPem,
    async issue(opts: LeafOptions): Promise<PemPair> {
      const leafAlg = opts.algorithm ?? algorithm;
      const leafKeys = await generateKeys(leafAlg);
      const names: x509.JsonGeneralName[] = [
        ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
        ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
        ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
      ];
      const eku =
        opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth;
      const validity = window(opts.days ?? 825);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${opts.commonName}`,
        issuer: ca.subject,
        notBefore: validity.notBefore,
        notAfter: opts.notAfter ?? validity.notAfter,
        signingAlgorithm: algParams(algorithm),
        publicKey: leafKeys.publicKey,
        signingKey: caKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          ...(opts.usage === 'none' ? [] : [new x509.ExtendedKeyUsageExtension([eku], false)]),
          new x509.SubjectAlternativeNameExtension(names, false),
          await x509.AuthorityKeyIdentifierExtension.create(ca, false),
        ],
      });
      return { certPem: leaf.toString('pem') + '\n', keyPem: await keyPem(leafKeys.privateKey) };
    },
    async crl(serials: readonly string[], days = 7): Promise<string> {
      const thisUpdate = new Date(Date.now() - 60_000);
      const crl = await x509.X509CrlGenerator.create({
        issuer: ca.subjectName,
        thisUpdate,
        nextUpdate: new Date(thisUpdate.getTime() + days * 86_400_000),
        signingAlgorithm: algParams(algorithm),
        signingKey: caKey,
        entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: thisUpdate })),
      });
      // OpenSSL (and so Node's TLS layer) reads the RFC 7468 label "X509 CRL", not "CRL".
      const b64 = Buffer.from(crl.rawData)
        .toString('base64')
        .replace(/(.{64})/g, '$1\n');
      return `-----BEGIN X509 CRL-----\n${b64.trimEnd()}\n-----END X509 CRL-----\n`;
    },
  };
}

/** Load a CA written by `keybroker init` (pki/ca.pem + pki/ca-key.pem) to issue more certificates. */
export async function loadDevCa(certPem: string, keyPem: string): Promise<DevCa> {
  const cert = new x509.X509Certificate(certPem);
  const algorithm: PkiAlgorithm = cert.publicKey.algorithm.name === 'ECDSA' ? 'ecdsa-p256' : 'mldsa65';
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const key = await crypto.subtle.importKey('pkcs8', der, algParams(algorithm), true, ['sign']);
  return caFrom(cert, key, algorithm, certPem, keyPem);
}
