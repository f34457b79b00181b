/**
 * Key import (bring your own key). CreateImportJob makes a one-time wrapping key pair
 * (import-wrapping.ts) bound to tenant, customer, key name and algorithm, with an expiry; its
 * private key is stored only wrapped under the tenant's TEK (wrapped-key-v1 0x13, the job's
 * fields hashed into the binding), so a tenant shred takes it, also from copies of the file.
 * ImportKey opens the importer's blob with it, checks the key (import-key-material.ts) and
 * stores it like a generated key: a new key, or a new primary version of the owner's key of
 * the same algorithm. The job row is deleted by the import that uses it (a second import finds
 * no job) and by any call of the tenant after it expired. Key bytes never leave this layer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { KbError, decryptionFailed } from '../errors.ts';
import {
  countImportJobs,
  deleteExpiredImportJobs,
  getImportJob,
  insertImportJob,
  takeImportJob,
  type ImportJobRow,
  type ImportWrapping,
} from '../store/import-job-rows.ts';
import type { TenantRow } from '../store/registry-rows.ts';
import { unwrapBoundKey, wrapBoundKey, type BoundKeyIdentity } from '../wire/wrapped-key-v1.ts';
import type * as Api from './asymmetric-key-api.ts';
import type { AsymmetricRuntime } from './asymmetric-key-material.ts';
import { asymmetricKeyId, type AsymmetricKeyType } from './asymmetric-key-store.ts';
import type { AsymmetricKeyVersions } from './asymmetric-key-versions.ts';
import type { Hierarchy } from './hierarchy.ts';
import { IMPORTABLE_TYPES, importedKeyMaterial } from './import-key-material.ts';
import { importKdfInfo, newImportKeyPair, unwrapImport } from './import-wrapping.ts';

/** Default and largest lifetime of a job. */
export const DEFAULT_IMPORT_JOB_TTL_S = 24 * 3600;
export const MAX_IMPORT_JOB_TTL_S = 7 * 24 * 3600;
/** Open jobs one tenant may hold (each is a stored key pair). */
export const MAX_OPEN_IMPORT_JOBS = 100;
/** Largest wrapped import blob: RSA ciphertext + KWP of the largest PKCS#8 key accepted. */
export const MAX_IMPORT_BLOB_BYTES = 16 * 1024;
export type { ImportWrapping };
const JOB_ID = /^ij-[0-9a-f]{32}$/;
const BINDING_DOMAIN = 'keybroker import job v1';

export interface ImportJob {
  readonly jobId: string;
  readonly keyId: string;
  readonly type: AsymmetricKeyType;
  readonly wrapping: ImportWrapping;
  /** ML-KEM-768: raw encapsulation key; RSA: SPKI DER. */
  readonly publicKey: Uint8Array;
  readonly expiresAt: string;
  /** The HKDF info of an ML-KEM-768 job (import-wrapping.ts); empty for RSA. */
  readonly kdfInfo: Uint8Array;
  readonly customer?: string;
}

/** A job id, or INVALID_ARGUMENT naming the grammar. */
export function importJobId(v: unknown): string {
  if (typeof v !== 'string' || !JOB_ID.test(v))
    throw new KbError('INVALID_ARGUMENT', `job_id must match ${JOB_ID.source}`);
  return v;
}

function jobIdentity(t: TenantRow, r: ImportJobRow): BoundKeyIdentity {
  const h = createHash('sha256');
  for (const f of [BINDING_DOMAIN, r.customer, r.keyId, r.alg, r.wrapping, r.createdAt, r.expiresAt]) {
    const b = Buffer.from(f, 'utf8');
    h.update(Buffer.from([b.length >> 8, b.length & 0xff]));
    h.update(b);
  }
  h.update(r.publicKey);
  // The key id ("import-job:<id>") cannot be an asymmetric key's: those never contain ':'.
  return {
    org: t.org,
    tenant: t.tenant,
    kek: 'tek',
    customer: '',
    keyId: `import-job:${r.jobId}`,
    keyVersion: 1,
    kekVersion: r.tekVersion,
    binding: new Uint8Array(h.digest()),
  };
}

export class KeyImport {
  readonly #h: Hierarchy;
  readonly #rt: AsymmetricRuntime;
  readonly #v: AsymmetricKeyVersions;

  constructor(h: Hierarchy, rt: AsymmetricRuntime, v: AsymmetricKeyVersions) {
    this.#h = h;
    this.#rt = rt;
    this.#v = v;
  }

  async createJob(
    ref: Api.KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    wrapping: ImportWrapping,
    ttlSeconds: number = DEFAULT_IMPORT_JOB_TTL_S,
  ): Promise<ImportJob> {
    const id = asymmetricKeyId(keyId);
    if (!IMPORTABLE_TYPES.includes(type))
      throw new KbError(
        'INVALID_ARGUMENT',
        `${type} keys cannot be imported (importable: ${IMPORTABLE_TYPES.join(', ')})`,
      );
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > MAX_IMPORT_JOB_TTL_S)
      throw new KbError('INVALID_ARGUMENT', `ttl_seconds must be in [60, ${MAX_IMPORT_JOB_TTL_S}]`);
    const { t, customer } = this.#v.owner(ref);
    const existing = this.#v.typeOf(t, id);
    if (existing !== undefined && existing !== type)
      throw new KbError('FAILED_PRECONDITION', `key exists with another algorithm (${existing})`);
    const s = this.#h.store(t);
    const now = this.#h.d.now();
    deleteExpiredImportJobs(s, now.toISOString());
    if (countImportJobs(s) >= MAX_OPEN_IMPORT_JOBS)
      throw new KbError('LIMIT_REACHED', `at most ${MAX_OPEN_IMPORT_JOBS} open import jobs per tenant`);
    const kp = newImportKeyPair(wrapping);
    const tek = await this.#h.tekCopy(t.org, t.tenant, t.primaryTek);
    try {
      const base: ImportJobRow = {
        jobId: `ij-${randomBytes(16).toString('hex')}`,
        customer,
        keyId: id,
        alg: type,
        wrapping,
        tekVersion: t.primaryTek,
        wrapped: new Uint8Array(0),
        publicKey: kp.publicKey,
        createdAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + ttlSeconds * 1000).toISOString(),
      };
      const row = { ...base, wrapped: wrapBoundKey(tek, jobIdentity(t, base), kp.secret) };
      insertImportJob(s, row);
      return {
        jobId: row.jobId,
        keyId: id,
        type,
        wrapping,
        publicKey: row.publicKey,
        expiresAt: row.expiresAt,
        kdfInfo: wrapping === 'ml-kem-768-aes-kwp' ? this.#kdfInfo(t, row) : new Uint8Array(0),
        ...(customer !== '' ? { customer } : {}),
      };
    } finally {
      tek.fill(0);
      kp.secret.fill(0);
    }
  }

  /** The key name and algorithm a job imports, for authorisation before the call; never throws. */
  jobTarget(ref: Api.KeyOwner, jobId: unknown): { keyId: string; type: AsymmetricKeyType } | undefined {
    try {
      const t = this.#h.activeTenant(ref.org, ref.tenant);
      const r = getImportJob(this.#h.store(t), importJobId(jobId));
      if (r === undefined || r.customer !== (ref.customer ?? '')) return undefined;
      return { keyId: r.keyId, type: r.alg as AsymmetricKeyType };
    } catch (err) {
      void err; // the call itself reports it, through the gate
      return undefined;
    }
  }

  async importKey(
    ref: Api.KeyOwner,
    jobIdIn: string,
    blob: Uint8Array,
    expectPublicKey?: Uint8Array,
  ): Promise<Api.AsymmetricKeyInfo> {
    const jobId = importJobId(jobIdIn);
    const { t, customer } = this.#v.owner(ref);
    const s = this.#h.store(t);
    const row = getImportJob(s, jobId);
    // Another tenant's job is not in this file; another customer's is treated as absent too.
    if (row === undefined || row.customer !== customer) throw new KbError('NOT_FOUND', 'import job');
    if (Date.parse(row.expiresAt) <= this.#h.d.now().getTime()) {
      takeImportJob(s, jobId);
      throw new KbError('FAILED_PRECONDITION', 'import job expired');
    }
    // A TEK that no longer unwraps (the tenant's files restored after its shred) is the opaque
    // error, as for any stored key (asymmetric-key-loader.ts); an HSM outage says so.
    const tek = await this.#h.tekCopy(t.org, t.tenant, row.tekVersion).catch((err: unknown) => {
      if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN'))
        throw err;
      throw decryptionFailed(err);
    });
    let jobSecret: Uint8Array;
    try {
      jobSecret = unwrapBoundKey(tek, jobIdentity(t, row), row.wrapped);
    } catch (err) {
      throw new KbError('KEY_INTEGRITY', undefined, { cause: err });
    } finally {
      tek.fill(0);
    }
    let keyBytes: Uint8Array;
    try {
      keyBytes = unwrapImport(row.wrapping, jobSecret, this.#binding(t, row), blob);
    } finally {
      jobSecret.fill(0);
    }
    let material;
    try {
      material = importedKeyMaterial(this.#rt, row.alg as AsymmetricKeyType, keyBytes, expectPublicKey);
    } finally {
      keyBytes.fill(0);
    }
    // Taken before the key is stored: of two imports racing on one job, one stores a key.
    if (!takeImportJob(s, jobId)) {
      material.secret.destroy();
      throw new KbError('NOT_FOUND', 'import job');
    }
    return this.#v.importVersion(ref, row.keyId, row.alg as AsymmetricKeyType, material);
  }

  #binding(t: TenantRow, r: ImportJobRow) {
    return { jobId: r.jobId, org: t.org, tenant: t.tenant, customer: r.customer, keyId: r.keyId, alg: r.alg };
  }

  #kdfInfo(t: TenantRow, r: ImportJobRow): Uint8Array {
    return importKdfInfo(this.#binding(t, r));
  }
}
