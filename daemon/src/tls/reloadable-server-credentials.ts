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

function readContext(files: TlsFiles): SecureContextOptions {
  return {
    ca: readFileSync(files.caFile),
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

  constructor(files: TlsFiles) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, readContext(files));
    this.#files = files;
  }

  /** Re-read the files (optionally new paths). Throws, keeping the old context, if they are bad. */
  reload(files: TlsFiles = this.#files): void {
    const ctx = readContext(files);
    // Build it once here: a key that does not match its certificate throws now, instead of
    // inside grpc-js, which would then refuse every new connection.
    createSecureContext(ctx);
    this.#files = files;
    this.updateSecureContextOptions(ctx);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}
