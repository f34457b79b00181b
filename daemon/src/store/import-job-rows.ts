/**
 * The `import_jobs` table of a tenant file (schema: tenant-store.ts, migration 5). One row per
 * open key-import job: its wrapping public key in the clear and its private key wrapped under the
 * TEK (keys/key-import.ts). A job is taken (deleted) by the import that uses it, so a job opens
 * at most one import even when two calls race.
 */
import type { TenantStore } from './tenant-store.ts';

export type ImportWrapping = 'ml-kem-768-aes-kwp' | 'rsa-oaep-3072-sha256-aes-kwp';

export interface ImportJobRow {
  readonly jobId: string;
  /** '' for a tenant-level key. */
  readonly customer: string;
  readonly keyId: string;
  /** The AsymmetricKeyType the imported key must be. */
  readonly alg: string;
  readonly wrapping: ImportWrapping;
  readonly tekVersion: number;
  readonly wrapped: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly createdAt: string;
  readonly expiresAt: string;
}

type Raw = Record<string, unknown>;
const rowOf = (r: Raw): ImportJobRow => ({
  jobId: r.job_id as string,
  customer: r.customer as string,
  keyId: r.key_id as string,
  alg: r.alg as string,
  wrapping: r.wrapping as ImportWrapping,
  tekVersion: r.tek_version as number,
  wrapped: new Uint8Array(r.wrapped as Buffer),
  publicKey: new Uint8Array(r.public_key as Buffer),
  createdAt: r.created_at as string,
  expiresAt: r.expires_at as string,
});

export function insertImportJob(s: TenantStore, r: ImportJobRow): void {
  s.st(
    `INSERT INTO import_jobs (job_id, customer, key_id, alg, wrapping, tek_version, wrapped, public_key, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    r.jobId,
    r.customer,
    r.keyId,
    r.alg,
    r.wrapping,
    r.tekVersion,
    r.wrapped,
    r.publicKey,
    r.createdAt,
    r.expiresAt,
  );
}

export function getImportJob(s: TenantStore, jobId: string): ImportJobRow | undefined {
  const r = s.st('SELECT * FROM import_jobs WHERE job_id = ?').get(jobId) as Raw | undefined;
  return r && rowOf(r);
}

/** Delete a job; true when this call deleted it (the one import that may use it). */
export function takeImportJob(s: TenantStore, jobId: string): boolean {
  return s.st('DELETE FROM import_jobs WHERE job_id = ?').run(jobId).changes === 1;
}

/** Delete every job that expired at or before `nowIso`; returns how many. */
export function deleteExpiredImportJobs(s: TenantStore, nowIso: string): number {
  return s.st('DELETE FROM import_jobs WHERE expires_at <= ?').run(nowIso).changes;
}

/** Open jobs of the tenant (a bound on how many may be open at once). */
export function countImportJobs(s: TenantStore): number {
  return (s.st('SELECT COUNT(*) AS n FROM import_jobs').get() as { n: number }).n;
}
