/**
 * One SQLite file per tenant: customers, wrapped CEK versions, and a generic `tenant_keys` table
 * for the tenant's asymmetric keys wrapped under its TEK (or a customer's CEK). Deleting the file (after
 * every handle is closed) removes the rows; cryptographic erasure comes from the shred epoch.
 */
import Database from 'better-sqlite3';
import { applyDurablePragmas, migrate } from './migrations.ts';
import type { Migration } from './migrations.ts';

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE customers (
  customer TEXT PRIMARY KEY, enabled INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('active','destroyed')),
  created_at TEXT NOT NULL, primary_cek INTEGER NOT NULL,
  rotation_period_s INTEGER NOT NULL, usage_limit INTEGER NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL);
CREATE TABLE cek_versions (
  customer TEXT NOT NULL REFERENCES customers(customer), version INTEGER NOT NULL, tek_version INTEGER NOT NULL,
  wrapped BLOB NOT NULL, state TEXT NOT NULL CHECK (state IN ('enabled','disabled')),
  created_at TEXT NOT NULL, uses INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (customer, version));
-- Tenant-owned keys (asymmetric private keys of the post-quantum issue): wrapped under the TEK
-- with wrapped-key-v1 type 0x11; a TEK rotation rewraps them like CEKs.
CREATE TABLE tenant_keys (
  key_id TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, alg TEXT NOT NULL,
  tek_version INTEGER NOT NULL, wrapped BLOB NOT NULL, public_key BLOB, state TEXT NOT NULL,
  created_at TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (key_id, version));
`,
  },
  {
    version: 2,
    sql: `
-- Asymmetric keys: a key may belong to a customer (customer <> ''): its rows are wrapped under
-- that customer's CEK version cek_version (tek_version 0), not the TEK, so TEK rotations leave
-- them alone and the customer's shred takes them. uses: operations of the version (flushed in
-- batches); tenant_key_policies: rotation period, usage limit and minimum versions per key.
ALTER TABLE tenant_keys ADD COLUMN customer TEXT NOT NULL DEFAULT '';
ALTER TABLE tenant_keys ADD COLUMN cek_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenant_keys ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
CREATE TABLE tenant_key_policies (
  key_id TEXT PRIMARY KEY, rotation_period_s INTEGER NOT NULL, usage_limit INTEGER NOT NULL,
  min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL);
`,
  },
  {
    version: 4,
    sql: `
-- Blind indexes (keys/blind-indexes.ts): a definition per name with versions; each version's
-- HMAC key is derived from one CEK version of each customer, pinned at the customer's first use
-- (blind_index_ceks), so tokens stay stable across CEK rotations and die with the customer.
CREATE TABLE blind_indexes (
  name TEXT PRIMARY KEY, primary_version INTEGER NOT NULL, min_version INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE blind_index_versions (
  name TEXT NOT NULL REFERENCES blind_indexes(name), version INTEGER NOT NULL, normalization INTEGER NOT NULL,
  output_bytes INTEGER NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE blind_index_ceks (
  name TEXT NOT NULL, version INTEGER NOT NULL, customer TEXT NOT NULL, cek_version INTEGER NOT NULL,
  PRIMARY KEY (name, version, customer));
-- Secrets (keys/secret-store.ts): values sealed under a key derived from the customer's CEK
-- version cek_version; blob is NULL once a version is destroyed.
CREATE TABLE secrets (
  customer TEXT NOT NULL, name TEXT NOT NULL, current_version INTEGER NOT NULL, max_versions INTEGER NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (customer, name));
CREATE TABLE secret_versions (
  customer TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, cek_version INTEGER NOT NULL, blob BLOB,
  state TEXT NOT NULL CHECK (state IN ('active','deleted','destroyed')), created_at TEXT NOT NULL,
  PRIMARY KEY (customer, name, version));
`,
  },
  {
    version: 5,
    sql: `
-- Key import jobs (keys/key-import.ts): a one-time wrapping key pair per job, its private key
-- wrapped under the TEK (0x13, bound to the job's fields); the row goes after one import or at expiry.
CREATE TABLE import_jobs (
  job_id TEXT PRIMARY KEY, customer TEXT NOT NULL, key_id TEXT NOT NULL, alg TEXT NOT NULL,
  wrapping TEXT NOT NULL, tek_version INTEGER NOT NULL, wrapped BLOB NOT NULL, public_key BLOB NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
`,
  },
];

export interface CustomerRow {
  readonly customer: string;
  readonly enabled: boolean;
  readonly state: 'active' | 'destroyed';
  readonly createdAt: string;
  readonly primaryCek: number;
  readonly rotationPeriodS: number;
  readonly usageLimit: number;
  readonly minEnc: number;
  readonly minDec: number;
}
export interface CekRow {
  readonly customer: string;
  readonly version: number;
  readonly tekVersion: number;
  readonly wrapped: Uint8Array;
  readonly state: 'enabled' | 'disabled';
  readonly createdAt: string;
  readonly uses: number;
}
export interface TenantKeyRow {
  readonly keyId: string;
  readonly version: number;
  readonly tekVersion: number;
  readonly wrapped: Uint8Array;
}

type Raw = Record<string, unknown>;
const customerOf = (r: Raw): CustomerRow => ({
  customer: r.customer as string,
  enabled: r.enabled === 1,
  state: r.state as CustomerRow['state'],
  createdAt: r.created_at as string,
  primaryCek: r.primary_cek as number,
  rotationPeriodS: r.rotation_period_s as number,
  usageLimit: r.usage_limit as number,
  minEnc: r.min_enc as number,
  minDec: r.min_dec as number,
});
const cekOf = (r: Raw): CekRow => ({
  customer: r.customer as string,
  version: r.version as number,
  tekVersion: r.tek_version as number,
  wrapped: new Uint8Array(r.wrapped as Buffer),
  state: r.state as CekRow['state'],
  createdAt: r.created_at as string,
  uses: r.uses as number,
});

/** A tenant's own database file. Handles are owned by TenantStorePool. */
/** The one INSERT of a customer row (TenantStore and the bulk file images both use it). */
export const INSERT_CUSTOMER_SQL = `INSERT INTO customers (customer, enabled, state, created_at, primary_cek, rotation_period_s, usage_limit, min_enc, min_dec)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/** Parameters of INSERT_CUSTOMER_SQL, in its column order. */
export const customerParams = (c: CustomerRow) =>
  [
    c.customer,
    c.enabled ? 1 : 0,
    c.state,
    c.createdAt,
    c.primaryCek,
    c.rotationPeriodS,
    c.usageLimit,
    c.minEnc,
    c.minDec,
  ] as const;
/** The one INSERT of a CEK version row. */
export const INSERT_CEK_SQL =
  'INSERT INTO cek_versions (customer, version, tek_version, wrapped, state, created_at, uses) VALUES (?, ?, ?, ?, ?, ?, ?)';
/** Parameters of INSERT_CEK_SQL, in its column order. */
export const cekParams = (c: CekRow) =>
  [c.customer, c.version, c.tekVersion, c.wrapped, c.state, c.createdAt, c.uses] as const;

export class TenantStore {
  readonly db: Database.Database;
  readonly path: string;

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
  }

  /** Open (creating when `create`) a tenant file; opening a missing file without `create` throws. */
  static open(path: string, create: boolean): TenantStore {
    const db = new Database(path, { fileMustExist: !create });
    applyDurablePragmas(db);
    // Tenant files are small and up to maxOpenTenantFiles are open: keep each page cache small
    // (SQLite's default is 2 MiB per connection) so memory is bounded by the pool, not by data.
    db.pragma('cache_size = -128');
    migrate(db, MIGRATIONS);
    return new TenantStore(db, path);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  #keysGeneration = 0;
  /** Changes whenever tenant_keys or tenant_key_policies is written through this store (caches check it). */
  get keysGeneration(): number {
    return this.#keysGeneration;
  }
  /** Every writer of tenant_keys / tenant_key_policies calls this once its statement has run. */
  keysChanged(): void {
    this.#keysGeneration++;
  }

  readonly #stmts = new Map<string, Database.Statement>();
  /** A prepared statement, compiled once per connection (compiling costs more than running). */
  st(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  insertCustomer(c: CustomerRow, cek: CekRow): void {
    this.tx(() => {
      this.st(INSERT_CUSTOMER_SQL).run(...customerParams(c));
      this.#insertCek(cek);
    });
  }
  getCustomer(customer: string): CustomerRow | undefined {
    const r = this.st('SELECT * FROM customers WHERE customer = ?').get(customer) as Raw | undefined;
    return r && customerOf(r);
  }
  listCustomers(): CustomerRow[] {
    return (this.st('SELECT * FROM customers ORDER BY customer').all() as Raw[]).map(customerOf);
  }
  setCustomerEnabled(customer: string, enabled: boolean): void {
    this.st('UPDATE customers SET enabled = ? WHERE customer = ?').run(enabled ? 1 : 0, customer);
  }
  setCustomerPolicy(
    customer: string,
    p: { rotationPeriodS: number; usageLimit: number; minEnc: number; minDec: number },
  ): void {
    this.st(
      'UPDATE customers SET rotation_period_s = ?, usage_limit = ?, min_enc = ?, min_dec = ? WHERE customer = ?',
    ).run(p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec, customer);
  }
  getCek(customer: string, version: number): CekRow | undefined {
    const r = this.st('SELECT * FROM cek_versions WHERE customer = ? AND version = ?').get(
      customer,
      version,
    ) as Raw | undefined;
    return r && cekOf(r);
  }
  listCeks(customer: string): CekRow[] {
    return (
      this.st('SELECT * FROM cek_versions WHERE customer = ? ORDER BY version').all(customer) as Raw[]
    ).map(cekOf);
  }
  listAllCeks(): CekRow[] {
    return (this.st('SELECT * FROM cek_versions').all() as Raw[]).map(cekOf);
  }
  /** Add a CEK version and make it primary, in one transaction. */
  addPrimaryCek(cek: CekRow): void {
    this.tx(() => {
      this.#insertCek(cek);
      this.st('UPDATE customers SET primary_cek = ? WHERE customer = ?').run(cek.version, cek.customer);
    });
  }
  setCekState(customer: string, version: number, state: CekRow['state']): void {
    this.st('UPDATE cek_versions SET state = ? WHERE customer = ? AND version = ?').run(
      state,
      customer,
      version,
    );
  }
  /**
   * Add usage counts. Counts are not key material and a crash may lose the last interval anyway,
   * so this write skips the fsync (synchronous=NORMAL in WAL) and restores FULL afterwards.
   */
  addCekUses(rows: readonly { customer: string; version: number; n: number }[]): void {
    const st = this.st('UPDATE cek_versions SET uses = uses + ? WHERE customer = ? AND version = ?');
    this.countsTx(() => {
      for (const r of rows) st.run(r.n, r.customer, r.version);
    });
  }

  /** A transaction for usage counts only: no fsync (synchronous=NORMAL in WAL), FULL restored after. */
  countsTx(fn: () => void): void {
    this.db.pragma('synchronous = NORMAL');
    try {
      this.tx(fn);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** Replace every wrapped CEK and tenant key with its rewrapped form, atomically. */
  rewrapAll(
    ceks: readonly { customer: string; version: number; tekVersion: number; wrapped: Uint8Array }[],
    keys: readonly TenantKeyRow[],
  ): void {
    const c = this.st(
      'UPDATE cek_versions SET tek_version = ?, wrapped = ? WHERE customer = ? AND version = ?',
    );
    const k = this.st('UPDATE tenant_keys SET tek_version = ?, wrapped = ? WHERE key_id = ? AND version = ?');
    try {
      this.tx(() => {
        for (const r of ceks) c.run(r.tekVersion, r.wrapped, r.customer, r.version);
        for (const r of keys) k.run(r.tekVersion, r.wrapped, r.keyId, r.version);
      });
    } finally {
      this.keysChanged();
    }
  }
  /** Tombstone a customer and delete every wrapped CEK version of it; returns the versions deleted. */
  destroyCustomer(customer: string): number[] {
    try {
      return this.#destroyCustomer(customer);
    } finally {
      this.keysChanged();
    }
  }
  #destroyCustomer(customer: string): number[] {
    return this.tx(() => {
      const gone = this.listCeks(customer).map((r) => r.version);
      this.st('DELETE FROM cek_versions WHERE customer = ?').run(customer);
      // The customer's asymmetric keys (wrapped under those CEKs) and their policies go too.
      this.st(
        'DELETE FROM tenant_key_policies WHERE key_id IN (SELECT key_id FROM tenant_keys WHERE customer = ?)',
      ).run(customer);
      this.st('DELETE FROM tenant_keys WHERE customer = ?').run(customer);
      // Its secrets and blind-index pins (unreadable without the CEKs anyway).
      this.st('DELETE FROM secret_versions WHERE customer = ?').run(customer);
      this.st('DELETE FROM secrets WHERE customer = ?').run(customer);
      this.st('DELETE FROM blind_index_ceks WHERE customer = ?').run(customer);
      this.st("UPDATE customers SET state = 'destroyed', enabled = 0 WHERE customer = ?").run(customer);
      return gone;
    });
  }
  #insertCek(c: CekRow): void {
    this.st(INSERT_CEK_SQL).run(...cekParams(c));
  }
}
