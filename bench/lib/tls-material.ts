/**
 * ECDSA P-256 certificates for the bench's own servers (the echo ceiling) and for extra client
 * identities: a private CA, a server certificate for 127.0.0.1/localhost, and client
 * certificates with a SAN URI. Made with @peculiar/x509 on WebCrypto, in memory, in milliseconds.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** A certificate authority that can issue leaf certificates. */
export interface BenchCa {
  readonly certPem: string;
  readonly keys: CryptoKeyPair;
  readonly cert: x509.X509Certificate;
}

/** PEM certificate and PKCS#8 key of one leaf. */
export interface LeafPem {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Files a gRPC server and client need for mTLS, as written by `writeTlsMaterial`. */
export interface TlsFiles {
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
}

const notBefore = (): Date => new Date(Date.now() - 60_000);
const notAfter = (): Date => new Date(Date.now() + 7 * 24 * 3600_000);

/** A fresh self-signed P-256 CA. */
export async function createCa(name = 'CN=keybroker bench CA'): Promise<BenchCa> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name,
    keys,
    signingAlgorithm: SIGN,
    notBefore: notBefore(),
    notAfter: notAfter(),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keys, cert };
}

/** Issue a P-256 leaf: server (IP 127.0.0.1 + DNS localhost) or client (SAN URI). */
export async function issueLeaf(
  ca: BenchCa,
  opts: { readonly commonName: string; readonly server: boolean; readonly uris?: readonly string[] },
): Promise<LeafPem> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const names: x509.JsonGeneralName[] = opts.server
    ? [
        { type: 'ip', value: '127.0.0.1' },
        { type: 'dns', value: 'localhost' },
      ]
    : [];
  for (const uri of opts.uris ?? []) names.push({ type: 'url', value: uri });
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${opts.commonName}`,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    notBefore: notBefore(),
    notAfter: notAfter(),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        opts.server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem') + '\n', keyPem: pem('PRIVATE KEY', pkcs8) };
}

/** Create a CA, a server and a client certificate, write them under `dir`, return the paths. */
export async function writeTlsMaterial(
  dir: string,
  clientUri = 'spiffe://bench/echo/load',
): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createCa();
  const server = await issueLeaf(ca, { commonName: 'bench-server', server: true });
  const client = await issueLeaf(ca, { commonName: 'bench-client', server: false, uris: [clientUri] });
  const files: TlsFiles = {
    caCert: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server-key.pem'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client-key.pem'),
  };
  writeFileSync(files.caCert, ca.certPem);
  writeFileSync(files.serverCert, server.certPem);
  writeFileSync(files.serverKey, server.keyPem, { mode: 0o600 });
  writeFileSync(files.clientCert, client.certPem);
  writeFileSync(files.clientKey, client.keyPem, { mode: 0o600 });
  return files;
}

/** A CA loaded from `keybroker init`'s PEM files, to mint extra client identities. */
export async function loadCa(certPem: string, keyPem: string): Promise<BenchCa> {
  const cert = new x509.X509Certificate(certPem);
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign']);
  const publicKey = await cert.publicKey.export(
    EC,
    ['verify'],
    webcrypto as unknown as Parameters<typeof cert.publicKey.export>[2],
  );
  return { certPem, cert, keys: { privateKey, publicKey } };
}
