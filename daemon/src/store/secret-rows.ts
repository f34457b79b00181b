/**
 * The secrets tables of a tenant file (schema: tenant-store.ts, migration 4). A secret is keyed
 * by (customer, name); its versions hold sealed blobs (keys/secret-store.ts), never plaintext.
 */
import type { TenantStore } from './tenant-store.ts';

export type SecretVersionState = 'active' | 'deleted' | 'destroyed';

export interface SecretRow {
  readonly customer: string;
  readonly name: string;
  readonly currentVersion: number;
  readonly maxVersions: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}
export interface SecretVersionRow {
  readonly customer: string;
  readonly name: string;
  readonly version: number;
  readonly cekVersion: number;
  /** Undefined once destroyed. */
  readonly blob: Uint8Array | undefined;
  readonly state: SecretVersionState;
  readonly createdAt: string;
}

type Raw = Record<string, unknown>;
export const secretOf = (r: Raw): SecretRow => ({
  customer: r.customer as string,
  name: r.name as string,
  currentVersion: r.current_version as number,
  maxVersions: r.max_versions as number,
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});
export const versionOf = (r: Raw): SecretVersionRow => ({
  customer: r.customer as string,
  name: r.name as string,
  version: r.version as number,
  cekVersion: r.cek_version as number,
  blob: r.blob === null ? undefined : new Uint8Array(r.blob as Buffer),
  state: r.state as SecretVersionState,
  createdAt: r.created_at as string,
});

export function getSecret(s: TenantStore, customer: string, name: string): SecretRow | undefined {
  const r = s.st('SELECT * FROM secrets WHERE customer = ? AND name = ?').get(customer, name) as
    Raw | undefined;
  return r && secretOf(r);
}

export function listSecrets(s: TenantStore, customer: string): SecretRow[] {
  const sql = 'SELECT * FROM secrets WHERE customer = ? ORDER BY name';
  return (s.st(sql).all(customer) as Raw[]).map(secretOf);
}

export function getSecretVersion(
  s: TenantStore,
  customer: string,
  name: string,
  version: number,
): SecretVersionRow | undefined {
  const sql = 'SELECT * FROM secret_versions WHERE customer = ? AND name = ? AND version = ?';
  const r = s.st(sql).get(customer, name, version) as Raw | undefined;
  return r && versionOf(r);
}

/** Versions of a secret, oldest first (metadata and blobs). */
export function listSecretVersions(s: TenantStore, customer: string, name: string): SecretVersionRow[] {
  const sql = 'SELECT * FROM secret_versions WHERE customer = ? AND name = ? ORDER BY version';
  return (s.st(sql).all(customer, name) as Raw[]).map(versionOf);
}

/**
 * Append version `v.version` (= current + 1) with its sealed blob, then drop the oldest versions
 * beyond `maxVersions`; one transaction. Returns false when the current version moved meanwhile.
 */
export function appendSecretVersion(
  s: TenantStore,
  v: SecretVersionRow & { readonly blob: Uint8Array },
  maxVersions: number,
): boolean {
  return s.tx(() => {
    const cur = getSecret(s, v.customer, v.name);
    if ((cur?.currentVersion ?? 0) !== v.version - 1) return false;
    if (cur === undefined) {
      s.st(
        'INSERT INTO secrets (customer, name, current_version, max_versions, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      ).run(v.customer, v.name, v.version, maxVersions, v.createdAt, v.createdAt);
    } else {
      s.st(
        'UPDATE secrets SET current_version = ?, max_versions = ?, updated_at = ? WHERE customer = ? AND name = ?',
      ).run(v.version, maxVersions, v.createdAt, v.customer, v.name);
    }
    s.st(
      'INSERT INTO secret_versions (customer, name, version, cek_version, blob, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(v.customer, v.name, v.version, v.cekVersion, v.blob, 'active', v.createdAt);
    s.st('DELETE FROM secret_versions WHERE customer = ? AND name = ? AND version <= ?').run(
      v.customer,
      v.name,
      v.version - maxVersions,
    );
    return true;
  });
}

/** Move versions between active and deleted (soft delete / undelete); destroyed ones stay so. */
export function setSecretVersionsState(
  s: TenantStore,
  customer: string,
  name: string,
  versions: readonly number[],
  state: 'active' | 'deleted',
): void {
  const st = s.st(
    "UPDATE secret_versions SET state = ? WHERE customer = ? AND name = ? AND version = ? AND state <> 'destroyed'",
  );
  s.tx(() => {
    for (const v of versions) st.run(state, customer, name, v);
  });
}

/** Hard delete: the blobs are gone (the metadata row stays, marked destroyed). */
export function destroySecretVersions(
  s: TenantStore,
  customer: string,
  name: string,
  versions: readonly number[],
): void {
  const st = s.st(
    "UPDATE secret_versions SET state = 'destroyed', blob = NULL WHERE customer = ? AND name = ? AND version = ?",
  );
  s.tx(() => {
    for (const v of versions) st.run(customer, name, v);
  });
}
