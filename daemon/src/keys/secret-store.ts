/**
 * A versioned key/value store of secrets per tenant and customer. A value is sealed with
 * envelope-v1 (wire/envelope-v1.ts) under a key derived from the customer's primary CEK
 * (cek-subkey.ts, label "keybroker secret v1"), never under the CEK itself, so a stored secret
 * is not a Crypto ciphertext Decrypt would open. The AAD binds org, tenant, customer, name and
 * version; the envelope header binds org, tenant, customer and CEK version. A tampered, moved or
 * swapped row opens as the one opaque DECRYPTION_FAILED. Shredding the customer or tenant takes
 * the CEKs and so every secret, also in copies of the tenant file.
 *
 * Values never leave this file except as GetSecret's answer: not in errors, logs or audit facts.
 */
import { KbError, decryptionFailed } from '../errors.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';
import type { CustomerId, TenantRef } from '../ids.ts';
import {
  appendSecretVersion,
  destroySecretVersions,
  getSecret,
  getSecretVersion,
  listSecrets,
  listSecretVersions,
  setSecretVersionsState,
} from '../store/secret-rows.ts';
import type { SecretRow, SecretVersionState } from '../store/secret-rows.ts';
import type { TenantRow } from '../store/registry-store.ts';
import type { CustomerRow, TenantStore } from '../store/tenant-store.ts';
import { BlobType, openEnvelope, parseEnvelope, sealEnvelope } from '../wire/envelope-v1.ts';
import type { BrokerGuard } from './blind-indexes.ts';
import { cekSubkeyBytes, SUBKEY_LABEL, subkeyInfo } from './cek-subkey.ts';
import type { Hierarchy } from './hierarchy.ts';

/** Secret names: path-like ASCII, so policy globs can group them ("db/*", "payments/**"). */
const SECRET_NAME = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,254}$/;
export const MAX_SECRET_VALUE_BYTES = 64 * 1024;
export const DEFAULT_MAX_VERSIONS = 10;
export const MAX_MAX_VERSIONS = 100;
/** Versions one Delete/Undelete/Destroy call names. */
export const MAX_VERSIONS_PER_CALL = 100;

export interface SecretVersionInfo {
  readonly version: number;
  readonly state: SecretVersionState;
  readonly createdAt: string;
}
export interface SecretInfo {
  readonly name: string;
  readonly customer: CustomerId;
  readonly currentVersion: number;
  readonly maxVersions: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly versions: readonly SecretVersionInfo[];
}
export interface PutSecretRequest {
  readonly customer?: CustomerId;
  readonly name: string;
  readonly value: Uint8Array;
  /** Check-and-set: the current version must be this (0: the secret must not exist yet). */
  readonly cas?: number;
  /** Versions kept (oldest dropped beyond it); undefined keeps the secret's setting (new: 10). */
  readonly maxVersions?: number;
}
export interface SecretRef {
  readonly customer?: CustomerId;
  readonly name: string;
}

/** A secret name, or INVALID_ARGUMENT naming the grammar (never the value). */
export function secretName(v: unknown): string {
  if (typeof v !== 'string' || !SECRET_NAME.test(v))
    throw new KbError('INVALID_ARGUMENT', `name must match ${SECRET_NAME.source}`);
  return v;
}

/** AAD of one version: label ‖ org ‖ tenant ‖ customer ‖ name ‖ version (subkeyInfo's layout). */
function secretAad(t: TenantRow, customer: string, name: string, version: number): Uint8Array {
  return subkeyInfo('keybroker secret value v1', [t.org, t.tenant, customer, name, version]);
}

export class SecretStore {
  readonly #h: Hierarchy;
  readonly #guard: BrokerGuard;
  readonly #servingTenant: (ref: TenantRef) => TenantRow;

  constructor(h: Hierarchy, servingTenant: (ref: TenantRef) => TenantRow, guard: BrokerGuard) {
    this.#h = h;
    this.#servingTenant = servingTenant;
    this.#guard = guard;
  }

  /** Seal and store a new version; returns it. */
  put(ref: TenantRef, req: PutSecretRequest): Promise<{ version: number }> {
    return this.#guard(ref, async () => {
      const name = secretName(req.name);
      if (!(req.value instanceof Uint8Array) || req.value.length === 0)
        throw new KbError('INVALID_ARGUMENT', 'value is required');
      if (req.value.length > MAX_SECRET_VALUE_BYTES)
        throw new KbError('TOO_LARGE', `value over ${MAX_SECRET_VALUE_BYTES} bytes`);
      if (
        req.maxVersions !== undefined &&
        !(Number.isInteger(req.maxVersions) && req.maxVersions >= 1 && req.maxVersions <= MAX_MAX_VERSIONS)
      )
        throw new KbError('INVALID_ARGUMENT', `max_versions must be in [1, ${MAX_MAX_VERSIONS}]`);
      const { t, customer, c } = this.#customer(ref, req.customer);
      if (c.primaryCek < c.minEnc) throw new KbError('VERSION_BELOW_MINIMUM');
      const s = this.#h.store(t);
      const cur = getSecret(s, customer, name);
      const current = cur?.currentVersion ?? 0;
      if (req.cas !== undefined && req.cas !== current)
        throw new KbError('FAILED_PRECONDITION', 'check-and-set version does not match the current version');
      const version = current + 1;
      const cekVersion = c.primaryCek;
      const key = await cekSubkeyBytes(
        this.#h,
        t,
        customer,
        cekVersion,
        this.#keyInfo(t, customer, cekVersion),
      );
      const header = { type: BlobType.ciphertext, org: t.org, tenant: t.tenant, customer, cekVersion };
      let blob: Uint8Array;
      try {
        blob = sealEnvelope(key, header, req.value, secretAad(t, customer, name, version));
      } finally {
        key.fill(0);
      }
      const maxVersions = req.maxVersions ?? cur?.maxVersions ?? DEFAULT_MAX_VERSIONS;
      const row = {
        customer,
        name,
        version,
        cekVersion,
        blob,
        state: 'active' as const,
        createdAt: this.#now(),
      };
      // Another put won the race while the key loaded: this one lost its check-and-set.
      if (!appendSecretVersion(s, row, maxVersions))
        throw new KbError('FAILED_PRECONDITION', 'the secret changed meanwhile; read it and retry');
      this.#stillThere(ref, customer);
      return { version };
    });
  }

  /** The value of `version` (0 or undefined: the current one). */
  get(
    ref: TenantRef,
    r: SecretRef & { version?: number },
  ): Promise<{ value: Uint8Array; version: number; createdAt: string }> {
    return this.#guard(ref, async () => {
      const name = secretName(r.name);
      const { t, customer, c } = this.#customer(ref, r.customer);
      const s = this.#h.store(t);
      const sec = this.#secret(s, customer, name);
      const version = r.version === undefined || r.version === 0 ? sec.currentVersion : r.version;
      const row = getSecretVersion(s, customer, name, version);
      if (!row) throw new KbError('NOT_FOUND', 'secret version');
      if (row.state !== 'active' || row.blob === undefined)
        throw new KbError('NOT_FOUND', `secret version is ${row.state}`);
      const value = await this.#open(t, customer, name, version, row.cekVersion, row.blob);
      try {
        // Policy only after authentication, as for Decrypt (data-plane.ts).
        if (this.#h.disabledCeks(t, customer).has(row.cekVersion))
          throw new KbError('DISABLED', 'key version');
        if (row.cekVersion < c.minDec) throw new KbError('VERSION_BELOW_MINIMUM');
        this.#stillThere(ref, customer);
      } catch (err) {
        value.fill(0);
        throw err;
      }
      return { value, version, createdAt: row.createdAt };
    });
  }

  /** Names and metadata of a customer's secrets; never values. */
  list(ref: TenantRef, customerIn?: CustomerId): Promise<SecretInfo[]> {
    return this.#guard(ref, async () => {
      const { t, customer } = this.#customer(ref, customerIn, true);
      const s = this.#h.store(t);
      return listSecrets(s, customer).map((r) => this.#info(s, r));
    });
  }

  /** Soft delete (or undo it) of `versions` (empty: the current version). */
  setDeleted(
    ref: TenantRef,
    r: SecretRef,
    versions: readonly number[],
    deleted: boolean,
  ): Promise<SecretInfo> {
    return this.#guard(ref, async () => {
      const { s, customer, name, sec } = this.#target(ref, r);
      const vs = this.#versions(s, customer, name, versions.length === 0 ? [sec.currentVersion] : versions);
      setSecretVersionsState(s, customer, name, vs, deleted ? 'deleted' : 'active');
      return this.#info(s, this.#secret(s, customer, name));
    });
  }

  /** Hard delete of `versions`: their sealed values are removed from the tenant file. */
  destroyVersions(ref: TenantRef, r: SecretRef, versions: readonly number[]): Promise<SecretInfo> {
    return this.#guard(ref, async () => {
      const { s, customer, name } = this.#target(ref, r);
      if (versions.length === 0) throw new KbError('INVALID_ARGUMENT', 'versions must not be empty');
      const vs = this.#versions(s, customer, name, versions);
      destroySecretVersions(s, customer, name, vs);
      return this.#info(s, this.#secret(s, customer, name));
    });
  }

  async #open(
    t: TenantRow,
    customer: string,
    name: string,
    version: number,
    cekVersion: number,
    blob: Uint8Array,
  ) {
    let p;
    try {
      p = parseEnvelope(blob);
    } catch (err) {
      throw decryptionFailed(err);
    }
    // The row's header must name exactly this tenant, customer and CEK version.
    if (
      p.type !== BlobType.ciphertext ||
      p.org !== t.org ||
      p.tenant !== t.tenant ||
      p.customer !== customer ||
      p.cekVersion !== cekVersion
    )
      throw decryptionFailed();
    let key: Uint8Array;
    try {
      key = await cekSubkeyBytes(this.#h, t, customer, cekVersion, this.#keyInfo(t, customer, cekVersion));
    } catch (err) {
      // An HSM outage is retryable and says so; every other failure is the opaque one.
      if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN'))
        throw err;
      throw decryptionFailed(err);
    }
    try {
      return openEnvelope(key, p, secretAad(t, customer, name, version));
    } finally {
      key.fill(0);
    }
  }

  #keyInfo(t: TenantRow, customer: string, cekVersion: number): Uint8Array {
    return subkeyInfo(SUBKEY_LABEL.secret, [t.org, t.tenant, customer, cekVersion]);
  }

  #customer(
    ref: TenantRef,
    customerIn: CustomerId | undefined,
    disabledOk = false,
  ): { t: TenantRow; customer: CustomerId; c: CustomerRow } {
    const customer = customerIn ?? DEFAULT_CUSTOMER;
    const t = this.#servingTenant(ref);
    const c = this.#h.customerRow(t, customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    if (!c.enabled && !disabledOk) throw new KbError('DISABLED', 'customer');
    return { t, customer, c };
  }

  #target(ref: TenantRef, r: SecretRef) {
    const name = secretName(r.name);
    const { t, customer } = this.#customer(ref, r.customer, true);
    const s = this.#h.store(t);
    return { s, customer, name, sec: this.#secret(s, customer, name) };
  }

  #secret(s: TenantStore, customer: string, name: string): SecretRow {
    const sec = getSecret(s, customer, name);
    if (!sec) throw new KbError('NOT_FOUND', 'secret');
    return sec;
  }

  /** Distinct, existing versions (NOT_FOUND names no value, only that a version is missing). */
  #versions(s: TenantStore, customer: string, name: string, versions: readonly number[]): number[] {
    if (versions.length > MAX_VERSIONS_PER_CALL)
      throw new KbError('TOO_LARGE', `versions exceeds ${MAX_VERSIONS_PER_CALL} items`);
    const have = new Set(listSecretVersions(s, customer, name).map((v) => v.version));
    for (const v of versions) {
      if (!Number.isInteger(v) || v < 1)
        throw new KbError('INVALID_ARGUMENT', 'versions must be integers >= 1');
      if (!have.has(v)) throw new KbError('NOT_FOUND', 'secret version');
    }
    return [...new Set(versions)];
  }

  #info(s: TenantStore, r: SecretRow): SecretInfo {
    return {
      name: r.name,
      customer: r.customer as CustomerId,
      currentVersion: r.currentVersion,
      maxVersions: r.maxVersions,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      versions: listSecretVersions(s, r.customer, r.name).map((v) => ({
        version: v.version,
        state: v.state,
        createdAt: v.createdAt,
      })),
    };
  }

  /** A customer or tenant shredded while this ran must not get a result. */
  #stillThere(ref: TenantRef, customer: string): void {
    const c = this.#h.customerRow(this.#h.activeTenant(ref.org, ref.tenant), customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
  }

  #now(): string {
    return this.#h.d.now().toISOString();
  }
}
