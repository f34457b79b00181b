/**
 * The broker's CA bookkeeping in `<dataDir>/certificates.db` (SQLite, its own file like
 * approvals.db): each org's CA generations (certificate, where the key lives) and every issued
 * certificate (serial, identity, issuer generation, validity, revocation).
 */
import Database from 'better-sqlite3';
import { KbError } from '../errors.ts';
import type { CaAlgorithm } from './ca-key.ts';

/** One CA generation of an org. The newest is the one that issues; all are trusted. */
export interface CaRow {
  readonly org: string;
  readonly generation: number;
  readonly algorithm: CaAlgorithm;
  readonly certPem: string;
  /** CKA_LABEL of the signing key (ECDSA, non-extractable in the HSM) or of the KEK (ML-DSA). */
  readonly hsmLabel: string;
  /** ML-DSA-65: the 32-byte seed wrapped by the HSM KEK; undefined for an HSM key. */
  readonly wrappedSeed: Uint8Array | undefined;
  readonly createdAt: number;
}

/** One issued certificate. */
export interface IssuedRow {
  readonly serial: string;
  readonly org: string;
  readonly generation: number;
  readonly identity: string;
  readonly algorithm: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly issuedBy: string;
  readonly issuedAt: number;
  readonly revokedAt: number | undefined;
  readonly revokedBy: string | undefined;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS org_cas (
  org TEXT NOT NULL, generation INTEGER NOT NULL,
  algorithm TEXT NOT NULL CHECK (algorithm IN ('ecdsa-p256','mldsa65')),
  cert_pem TEXT NOT NULL, hsm_label TEXT NOT NULL, wrapped_seed BLOB, created_at INTEGER NOT NULL,
  PRIMARY KEY (org, generation)
) STRICT;
CREATE TABLE IF NOT EXISTS issued_certificates (
  serial TEXT PRIMARY KEY, org TEXT NOT NULL, generation INTEGER NOT NULL, identity TEXT NOT NULL,
  algorithm TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
  issued_by TEXT NOT NULL, issued_at INTEGER NOT NULL, revoked_at INTEGER, revoked_by TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS issued_org_identity ON issued_certificates (org, identity);
`;

interface CaDbRow {
  org: string;
  generation: number;
  algorithm: CaAlgorithm;
  cert_pem: string;
  hsm_label: string;
  wrapped_seed: Buffer | null;
  created_at: number;
}
interface IssuedDbRow {
  serial: string;
  org: string;
  generation: number;
  identity: string;
  algorithm: string;
  not_before: number;
  not_after: number;
  issued_by: string;
  issued_at: number;
  revoked_at: number | null;
  revoked_by: string | null;
}

const caOf = (r: CaDbRow): CaRow => ({
  org: r.org,
  generation: r.generation,
  algorithm: r.algorithm,
  certPem: r.cert_pem,
  hsmLabel: r.hsm_label,
  wrappedSeed: r.wrapped_seed === null ? undefined : new Uint8Array(r.wrapped_seed),
  createdAt: r.created_at,
});
const issuedOf = (r: IssuedDbRow): IssuedRow => ({
  serial: r.serial,
  org: r.org,
  generation: r.generation,
  identity: r.identity,
  algorithm: r.algorithm,
  notBefore: r.not_before,
  notAfter: r.not_after,
  issuedBy: r.issued_by,
  issuedAt: r.issued_at,
  revokedAt: r.revoked_at ?? undefined,
  revokedBy: r.revoked_by ?? undefined,
});

export class CertificateStore {
  readonly #db: Database.Database;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('busy_timeout = 5000'); // shared by the processes of serve --workers
    this.#db.exec(SCHEMA);
  }

  /** Every CA generation of every org, oldest first. */
  cas(): CaRow[] {
    return (this.#db.prepare('SELECT * FROM org_cas ORDER BY org, generation').all() as CaDbRow[]).map(caOf);
  }

  addCa(row: CaRow): void {
    this.#db
      .prepare(
        'INSERT INTO org_cas (org, generation, algorithm, cert_pem, hsm_label, wrapped_seed, created_at) VALUES (?,?,?,?,?,?,?)',
      )
      .run(
        row.org,
        row.generation,
        row.algorithm,
        row.certPem,
        row.hsmLabel,
        row.wrappedSeed === undefined ? null : Buffer.from(row.wrappedSeed),
        row.createdAt,
      );
  }

  addIssued(row: Omit<IssuedRow, 'revokedAt' | 'revokedBy'>): void {
    this.#db
      .prepare(
        `INSERT INTO issued_certificates (serial, org, generation, identity, algorithm, not_before, not_after, issued_by, issued_at)
         VALUES (?,?,?,?,?,?,?,?,?)`,
      )
      .run(
        row.serial,
        row.org,
        row.generation,
        row.identity,
        row.algorithm,
        row.notBefore,
        row.notAfter,
        row.issuedBy,
        row.issuedAt,
      );
  }

  issued(serial: string): IssuedRow | undefined {
    const r = this.#db.prepare('SELECT * FROM issued_certificates WHERE serial = ?').get(serial) as
      IssuedDbRow | undefined;
    return r === undefined ? undefined : issuedOf(r);
  }

  /** Issued certificates of an org (optionally one identity), newest first, at most `limit`. */
  list(org: string, identity: string | undefined, limit: number): IssuedRow[] {
    const rows =
      identity === undefined
        ? this.#db
            .prepare('SELECT * FROM issued_certificates WHERE org = ? ORDER BY issued_at DESC LIMIT ?')
            .all(org, limit)
        : this.#db
            .prepare(
              'SELECT * FROM issued_certificates WHERE org = ? AND identity = ? ORDER BY issued_at DESC LIMIT ?',
            )
            .all(org, identity, limit);
    return (rows as IssuedDbRow[]).map(issuedOf);
  }

  /** Revoked certificates not yet expired at `now` (what a CRL must list). */
  revoked(now: number): IssuedRow[] {
    return (
      this.#db
        .prepare('SELECT * FROM issued_certificates WHERE revoked_at IS NOT NULL AND not_after > ?')
        .all(now) as IssuedDbRow[]
    ).map(issuedOf);
  }

  /** Mark revoked (compare-and-set: a second revocation is refused). */
  revoke(org: string, serial: string, by: string, at: number): IssuedRow {
    const r = this.#db
      .prepare(
        'UPDATE issued_certificates SET revoked_at = ?, revoked_by = ? WHERE serial = ? AND org = ? AND revoked_at IS NULL',
      )
      .run(at, by, serial, org);
    const row = this.issued(serial);
    if (row === undefined || row.org !== org)
      throw new KbError('NOT_FOUND', 'no such certificate in this org');
    if (r.changes === 0) throw new KbError('FAILED_PRECONDITION', 'the certificate is already revoked');
    return row;
  }

  close(): void {
    this.#db.close();
  }
}
