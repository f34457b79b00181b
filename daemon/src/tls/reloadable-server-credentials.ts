/**
 * mTLS server credentials whose certificates can be swapped at runtime (SIGHUP) without
 * dropping connections: grpc-js watches credentials and calls setSecureContext on its servers,
 * so existing TLS sessions keep going and new handshakes see the new certificate.
 */
import { readFileSync } from 'node:fs';
import { ServerCredentials } from '@grpc/grpc-js';
import { createSecureContext } from 'node:tls';
import type { SecureContextOptions } from 'node:tls';

export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

function readContext(
  files: TlsFiles,
  crls: readonly string[],
  extraCas: readonly string[],
): SecureContextOptions {
  return {
    ca: [readFileSync(files.caFile), ...extraCas.map((p) => Buffer.from(p))],
    // Verified CRLs (tls/crl-file.ts), only when every CA of the bundle has one (extra CAs have
    // none here); the call gate checks the same revocations on every call either way.
    ...(crls.length > 0 && extraCas.length === 0 ? { crl: [...crls] } : {}),
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    // TLS 1.3 only. The key-exchange groups are left at Node 24's default, which puts the
    // hybrid post-quantum X25519MLKEM768 first.
    minVersion: 'TLSv1.3',
  };
}

/** Server credentials that require and verify a client certificate, TLS 1.3 only. */
export class ReloadableServerCredentials extends ServerCredentials {
  #files: TlsFiles;
  #crls: readonly string[];
  /** CA certificates trusted besides tls.caFile (the broker's own org CAs). */
  #extraCas: readonly string[] = [];

  /** `crls`: PEM CRLs for the handshake (empty: none), verified by tls/crl-file.ts. */
  constructor(files: TlsFiles, crls: readonly string[] = []) {
    super(
      { requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
      readContext(files, crls, []),
    );
    this.#files = files;
    this.#crls = crls;
  }

  /** Re-read the files (optionally new paths). Throws, keeping the old context, if they are bad. */
  reload(files: TlsFiles = this.#files, crls: readonly string[] = this.#crls): void {
    const ctx = readContext(files, crls, this.#extraCas);
    // Build it once here: a key that does not match its certificate throws now, instead of
    // inside grpc-js, which would then refuse every new connection.
    createSecureContext(ctx);
    this.#files = files;
    this.#crls = crls;
    this.updateSecureContextOptions(ctx);
  }

  /** Trust these CA certificates (PEM) too, from the next handshake on. */
  setExtraCas(pems: readonly string[]): void {
    const ctx = readContext(this.#files, this.#crls, pems);
    createSecureContext(ctx);
    this.#extraCas = pems;
    this.updateSecureContextOptions(ctx);
  }

  /** Whether the CRLs are checked in the handshake (else by the call gate only). */
  get crlInHandshake(): boolean {
    return this.#crls.length > 0 && this.#extraCas.length === 0;
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}
