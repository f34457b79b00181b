/**
 * The broker as internal CA for its callers: per org, CA generations (the newest issues, all are
 * trusted, so a rotation keeps the previous generation's certificates working until they expire),
 * issued certificates recorded in certificates.db, revocations, and CRLs for other verifiers.
 * What may be issued to whom is decided above (api/certificates-service.ts); this signs.
 */
import { join } from 'node:path';
import { KbError } from '../errors.ts';
import type { Hsm } from '../hsm/hsm.ts';
import { revocationKey } from '../tls/revocation-set.ts';
import type { CaAlgorithm } from './ca-key.ts';
import { CertificateStore } from './certificate-store.ts';
import type { IssuedRow } from './certificate-store.ts';
import { BACKDATE_MS, OrgCa } from './org-ca.ts';

/** CRLs this daemon publishes are valid this long (re-made on every fetch and revocation). */
const CRL_VALIDITY_MS = 7 * 86_400_000;

export interface CertificateAuthorityOptions {
  readonly hsm: Hsm;
  readonly dataDir: string;
  readonly now?: () => Date;
  /** Called after the set of trusted CA certificates or of revoked serials changed. */
  readonly onChange?: () => void;
  /** A generation that cannot be opened is left out (not trusted, not issuing) and reported here. */
  readonly onOpenError?: (org: string, generation: number, err: unknown) => void;
}

export interface IssueRequest {
  readonly org: string;
  readonly uri: string;
  readonly commonName: string;
  readonly spki: Uint8Array;
  /** Name of the leaf key's algorithm, for the record. */
  readonly keyAlgorithm: string;
  readonly lifetimeMs: number;
  readonly issuedBy: string;
}

export interface Issued {
  readonly certPem: string;
  /** The issuing CA certificate (PEM): the chain to append. */
  readonly caPem: string;
  readonly serial: string;
  readonly notAfter: Date;
  readonly generation: number;
}

export class CertificateAuthority {
  readonly #hsm: Hsm;
  readonly #store: CertificateStore;
  readonly #now: () => Date;
  readonly #onChange: () => void;
  /** Per org, generations in ascending order. */
  readonly #cas = new Map<string, OrgCa[]>();
  #revoked: ReadonlySet<string> = new Set();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(o: CertificateAuthorityOptions, store: CertificateStore) {
    this.#hsm = o.hsm;
    this.#store = store;
    this.#now = o.now ?? (() => new Date());
    this.#onChange = o.onChange ?? (() => {});
  }

  /** Open certificates.db in `dataDir` and every CA key it names. */
  static async open(o: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const store = new CertificateStore(join(o.dataDir, 'certificates.db'));
    const ca = new CertificateAuthority(o, store);
    for (const row of store.cas()) {
      try {
        ca.#add(await OrgCa.open(o.hsm, row));
      } catch (err) {
        // One org's broken CA must not take the daemon down: its certificates are refused
        // (untrusted) until it is repaired or replaced by a new generation.
        if (o.onOpenError === undefined) {
          store.close();
          throw err;
        }
        o.onOpenError(row.org, row.generation, err);
      }
    }
    ca.#refreshRevoked();
    return ca;
  }

  #add(ca: OrgCa): void {
    const list = this.#cas.get(ca.org) ?? [];
    list.push(ca);
    this.#cas.set(ca.org, list);
  }

  /** One thing at a time that changes the store (generations must not race). */
  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Every CA certificate of every org (PEM): added to the daemon's client trust. */
  trustedCaPems(): string[] {
    return [...this.#cas.values()].flat().map((c) => c.certPem);
  }

  /** revocationKey()s of every revoked, unexpired certificate this CA issued. */
  revokedKeys(): ReadonlySet<string> {
    return this.#revoked;
  }

  #refreshRevoked(): void {
    const keys = new Set<string>();
    for (const r of this.#store.revoked(this.#now().getTime())) {
      const ca = this.#cas.get(r.org)?.find((c) => c.generation === r.generation);
      if (ca !== undefined) keys.add(revocationKey(ca.nodeSubject, r.serial));
    }
    this.#revoked = keys;
  }

  /** The org's CA generations, oldest first (empty when it has none). */
  cas(org: string): readonly OrgCa[] {
    return this.#cas.get(org) ?? [];
  }

  /** Make a new CA generation for `org`; it issues from now on, the older ones stay trusted. */
  createCa(org: string, algorithm: CaAlgorithm): Promise<OrgCa> {
    return this.#serial(async () => {
      // Numbered after every recorded generation, opened or not: numbers are never reused.
      const generation = this.#store.cas().filter((r) => r.org === org).length + 1;
      const { ca, row } = await OrgCa.create(this.#hsm, org, generation, algorithm, this.#now());
      this.#store.addCa(row);
      this.#add(ca);
      this.#onChange();
      return ca;
    });
  }

  /** Issue a client certificate from the org's newest CA generation and record it. */
  async issue(r: IssueRequest): Promise<Issued> {
    const ca = this.cas(r.org).at(-1);
    if (ca === undefined)
      throw new KbError(
        'FAILED_PRECONDITION',
        `org ${r.org} has no CA yet (create one: keybroker cert ca create)`,
      );
    const now = this.#now();
    const notBefore = new Date(now.getTime() - BACKDATE_MS);
    const notAfter = new Date(now.getTime() + r.lifetimeMs);
    const { certPem, serial } = await ca.issue({
      spki: r.spki,
      uri: r.uri,
      commonName: r.commonName,
      notBefore,
      notAfter,
    });
    this.#store.addIssued({
      serial,
      org: r.org,
      generation: ca.generation,
      identity: r.uri,
      algorithm: r.keyAlgorithm,
      notBefore: notBefore.getTime(),
      notAfter: notAfter.getTime(),
      issuedBy: r.issuedBy,
      issuedAt: now.getTime(),
    });
    return { certPem, caPem: ca.certPem, serial, notAfter, generation: ca.generation };
  }

  /** The recorded certificate `serial` of `org`, if any. */
  issued(org: string, serial: string): IssuedRow | undefined {
    const row = this.#store.issued(serial);
    return row?.org === org ? row : undefined;
  }

  /** Revoke: from the next call on, on every connection. */
  revoke(org: string, serial: string, by: string): IssuedRow {
    const row = this.#store.revoke(org, serial, by, this.#now().getTime());
    this.#refreshRevoked();
    this.#onChange();
    return row;
  }

  list(org: string, identity: string | undefined, limit: number): IssuedRow[] {
    return this.#store.list(org, identity, limit);
  }

  /** A fresh CRL (PEM) per CA generation of `org`, for verifiers other than this daemon. */
  async crls(org: string): Promise<string[]> {
    const now = this.#now();
    const revoked = this.#store.revoked(now.getTime()).filter((r) => r.org === org);
    const next = new Date(now.getTime() + CRL_VALIDITY_MS);
    return Promise.all(
      this.cas(org).map((ca) =>
        ca.crl(
          revoked
            .filter((r) => r.generation === ca.generation)
            .map((r) => ({ serial: r.serial, revokedAt: r.revokedAt ?? now.getTime() })),
          now,
          next,
        ),
      ),
    );
  }

  close(): void {
    this.#store.close();
  }
}
