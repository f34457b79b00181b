/**
 * The serials the daemon refuses, by issuer: one set per source (the CRL file, the broker's own
 * CA), swapped whole on reload. The call gate asks it on every call, so revoking a certificate
 * takes effect on connections that are already open, not only on the next handshake.
 */

/** Canonical serial: upper-case hex without leading zeros (Node prints it so, CRLs may not). */
export function normalizeSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/**
 * Serials are unique per issuer only, so the key names both. `issuer` is the issuer name as
 * Node's X509Certificate prints it (`subject` of the CA, `issuer` of the leaf).
 */
export function revocationKey(issuer: string, serial: string): string {
  return `${issuer}\u0000${normalizeSerial(serial)}`;
}

/** Revoked (issuer, serial) pairs from several sources; lookups are one hash probe per source. */
export class RevocationSet {
  readonly #sources = new Map<string, ReadonlySet<string>>();

  /** Replace what one source revokes (an empty set clears it). */
  replace(source: string, keys: ReadonlySet<string>): void {
    this.#sources.set(source, keys);
  }

  has(issuer: string, serial: string): boolean {
    const key = revocationKey(issuer, serial);
    for (const keys of this.#sources.values()) if (keys.has(key)) return true;
    return false;
  }

  /** Entries per source, for logs and metrics. */
  sizes(): Record<string, number> {
    return Object.fromEntries([...this.#sources].map(([k, v]) => [k, v.size]));
  }
}
