/**
 * One generation of an org's CA: its self-signed certificate, the key that signs (ca-key.ts), and
 * the two things it makes: client certificates (clientAuth, one spiffe URI, no CA flag) and CRLs.
 */
import 'reflect-metadata';
import { X509Certificate as NodeX509, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { KbError } from '../errors.ts';
import { normalizeSerial } from '../tls/revocation-set.ts';
import { createCaKey, openCaKey } from './ca-key.ts';
import type { CaAlgorithm, CaKey } from './ca-key.ts';
import type { CaRow } from './certificate-store.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** CA certificates live this long; rotation (a new generation) is the way to replace one sooner. */
const CA_LIFETIME_MS = 5 * 365 * 86_400_000;
/** Issued certificates start this far in the past to tolerate clock skew between hosts. */
export const BACKDATE_MS = 60_000;

/**
 * A positive serial with 116 random bits (RFC 5280 allows 20 octets; 64 random bits suffice),
 * as 30 upper-case hex digits: under the 32 hex digits the audit scrubber redacts as a secret,
 * so audit records can name the serial.
 */
function newSerial(): string {
  const b = randomBytes(15);
  b[0] = ((b[0] ?? 0) & 0x0f) | 0x10; // positive, first digit non-zero: always 30 digits
  return normalizeSerial(b.toString('hex'));
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
}

export interface LeafRequest {
  /** The leaf's public key (SubjectPublicKeyInfo DER), from a verified CSR. */
  readonly spki: Uint8Array;
  readonly uri: string;
  /** Subject CN (the identity's last segment). */
  readonly commonName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class OrgCa {
  readonly org: string;
  readonly generation: number;
  readonly algorithm: CaAlgorithm;
  readonly certPem: string;
  readonly cert: x509.X509Certificate;
  /** The CA's subject as Node prints it: the issuer half of a revocation key. */
  readonly nodeSubject: string;
  readonly #key: CaKey;

  private constructor(org: string, generation: number, certPem: string, key: CaKey) {
    this.org = org;
    this.generation = generation;
    this.algorithm = key.algorithm;
    this.certPem = certPem;
    this.cert = new x509.X509Certificate(certPem);
    this.nodeSubject = new NodeX509(certPem).subject;
    this.#key = key;
  }

  /** A new generation: key (HSM or HSM-wrapped) and self-signed certificate. */
  static async create(
    hsm: Parameters<typeof createCaKey>[0],
    org: string,
    generation: number,
    algorithm: CaAlgorithm,
    now: Date,
  ): Promise<{ ca: OrgCa; row: CaRow }> {
    const { key, hsmLabel, wrappedSeed } = await createCaKey(hsm, org, generation, algorithm);
    const name = `CN=keybroker ${org} CA g${generation}, O=${org}`;
    const notBefore = new Date(now.getTime() - BACKDATE_MS);
    const publicKey = new x509.PublicKey(key.spki);
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: newSerial(),
        subject: name,
        issuer: name,
        notBefore,
        notAfter: new Date(notBefore.getTime() + CA_LIFETIME_MS),
        publicKey,
        signingKey: key.signingKey,
        signingAlgorithm: key.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(publicKey),
        ],
      },
      key.crypto,
    );
    const certPem = toPem(cert.rawData, 'CERTIFICATE');
    const ca = new OrgCa(org, generation, certPem, key);
    const row: CaRow = {
      org,
      generation,
      algorithm,
      certPem,
      hsmLabel,
      wrappedSeed,
      createdAt: now.getTime(),
    };
    return { ca, row };
  }

  /**
   * Reopen a generation. The key must be the certificate's: a wrapped seed moved from another
   * generation (same KEK) or a mislabelled HSM key would otherwise sign under this name.
   */
  static async open(hsm: Parameters<typeof openCaKey>[0], row: CaRow): Promise<OrgCa> {
    const key = await openCaKey(hsm, row);
    const certSpki = Buffer.from(new x509.X509Certificate(row.certPem).publicKey.rawData);
    if (!certSpki.equals(Buffer.from(key.spki)))
      throw new KbError(
        'FAILED_PRECONDITION',
        `CA ${row.org} g${row.generation}: key does not match its certificate`,
      );
    return new OrgCa(row.org, row.generation, row.certPem, key);
  }

  /** Sign a client certificate; returns its PEM and serial. */
  async issue(r: LeafRequest): Promise<{ certPem: string; serial: string }> {
    const serial = newSerial();
    const publicKey = new x509.PublicKey(r.spki);
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial,
        subject: `CN=${r.commonName}`,
        issuer: this.cert.subjectName,
        notBefore: r.notBefore,
        notAfter: r.notAfter,
        publicKey,
        signingKey: this.#key.signingKey,
        signingAlgorithm: this.#key.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: r.uri }], false),
          await x509.AuthorityKeyIdentifierExtension.create(this.cert, false),
          await x509.SubjectKeyIdentifierExtension.create(publicKey),
        ],
      },
      this.#key.crypto,
    );
    return { certPem: toPem(leaf.rawData, 'CERTIFICATE'), serial };
  }

  /** A CRL of this generation listing `revoked`, valid until `nextUpdate`. */
  async crl(
    revoked: readonly { serial: string; revokedAt: number }[],
    now: Date,
    nextUpdate: Date,
  ): Promise<string> {
    const crl = await x509.X509CrlGenerator.create(
      {
        issuer: this.cert.subjectName,
        thisUpdate: new Date(now.getTime() - BACKDATE_MS),
        nextUpdate,
        signingKey: this.#key.signingKey,
        signingAlgorithm: this.#key.signingAlgorithm,
        entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: new Date(r.revokedAt) })),
      },
      this.#key.crypto,
    );
    return toPem(crl.rawData, 'X509 CRL');
  }
}
