/**
 * One tenant's rows on PostgreSQL, inside one transaction that PostgresStore.withTenant opened
 * with keybroker.org/keybroker.tenant set: the async mirror of tenant-store.ts (customers, CEK
 * versions) and of keys/asymmetric-key-store.ts's `tenant_keys` statements. Every statement also
 * names org and tenant itself; row-level security is the second lock, for SQL that forgets to.
 * The object is only usable while its transaction is open.
 */
import type { PolicyRow } from '../registry-rows.ts';
import type { CekRow, CustomerRow, TenantKeyRow } from '../tenant-store.ts';
import type { PgQueryable, PgRaw } from './pg-connection.ts';
import { pgNotify } from './pg-notifier.ts';
import { PgRegistryStore } from './pg-registry-store.ts';
import { cekOf, customerOf, policyOf, tenantKeyOf, tenantKeyVersionOf } from './pg-rows.ts';
import type { TenantKeyVersionRow } from './pg-rows.ts';

export class PgTenantStore {
  readonly org: string;
  readonly tenant: string;
  /** The transaction's client, refusing queries once the transaction has ended (scopedClient). */
  readonly #db: PgQueryable;

  constructor(db: PgQueryable, org: string, tenant: string) {
    this.#db = db;
    this.org = org;
    this.tenant = tenant;
  }

  /** The registry, in this same transaction (a tenant's creation or destruction is then atomic). */
  get registry(): PgRegistryStore {
    return new PgRegistryStore(this.#db);
  }

  /**
   * SQL as given, in this tenant's transaction. Row-level security still applies: the tests use
   * it to show that a query without any tenant filter sees and writes only this tenant's rows.
   */
  async query(sql: string, values: unknown[] = []): Promise<PgRaw[]> {
    return (await this.#db.query<PgRaw>(sql, values)).rows;
  }

  /** A notification delivered when (and only if) this tenant transaction commits. */
  async notify(channel: string, payload: string): Promise<void> {
    await pgNotify(this.#db, channel, payload);
  }
  /** Runs sql with $1 = org, $2 = tenant, then `values` from $3 on. */
  async #rows(sql: string, values: unknown[] = []): Promise<PgRaw[]> {
    return (await this.#db.query<PgRaw>(sql, [this.org, this.tenant, ...values])).rows;
  }

  // --- customers and CEK versions ---
  async insertCustomer(c: CustomerRow, cek: CekRow): Promise<void> {
    await this.#rows(
      `INSERT INTO customers (org, tenant, customer, enabled, state, created_at, primary_cek, rotation_period_s,
         usage_limit, min_enc, min_dec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        c.customer,
        c.enabled,
        c.state,
        c.createdAt,
        c.primaryCek,
        c.rotationPeriodS,
        c.usageLimit,
        c.minEnc,
        c.minDec,
      ],
    );
    await this.#insertCek(cek);
  }
  async getCustomer(customer: string): Promise<CustomerRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM customers WHERE org = $1 AND tenant = $2 AND customer = $3', [
      customer,
    ]);
    return r && customerOf(r);
  }
  async listCustomers(): Promise<CustomerRow[]> {
    return (await this.#rows('SELECT * FROM customers WHERE org = $1 AND tenant = $2 ORDER BY customer')).map(
      customerOf,
    );
  }
  async setCustomerEnabled(customer: string, enabled: boolean): Promise<void> {
    await this.#rows('UPDATE customers SET enabled = $3 WHERE org = $1 AND tenant = $2 AND customer = $4', [
      enabled,
      customer,
    ]);
  }
  async setCustomerPolicy(customer: string, p: PolicyRow): Promise<void> {
    await this.#rows(
      `UPDATE customers SET rotation_period_s = $3, usage_limit = $4, min_enc = $5, min_dec = $6
         WHERE org = $1 AND tenant = $2 AND customer = $7`,
      [p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec, customer],
    );
  }
  async getCek(customer: string, version: number): Promise<CekRow | undefined> {
    const sql =
      'SELECT * FROM cek_versions WHERE org = $1 AND tenant = $2 AND customer = $3 AND version = $4';
    const [r] = await this.#rows(sql, [customer, version]);
    return r && cekOf(r);
  }
  async listCeks(customer: string): Promise<CekRow[]> {
    const sql =
      'SELECT * FROM cek_versions WHERE org = $1 AND tenant = $2 AND customer = $3 ORDER BY version';
    return (await this.#rows(sql, [customer])).map(cekOf);
  }
  async listAllCeks(): Promise<CekRow[]> {
    const sql = 'SELECT * FROM cek_versions WHERE org = $1 AND tenant = $2 ORDER BY customer, version';
    return (await this.#rows(sql)).map(cekOf);
  }
  /** Tenant-level asymmetric keys (wrapped under the TEK; customer keys are under a CEK). */
  async listTenantKeys(): Promise<TenantKeyRow[]> {
    const sql = `SELECT key_id, version, tek_version, wrapped FROM tenant_keys
                   WHERE org = $1 AND tenant = $2 AND customer = '' ORDER BY key_id, version`;
    return (await this.#rows(sql)).map(tenantKeyOf);
  }
  /** Add a CEK version and make it primary (atomic: the tenant transaction). */
  async addPrimaryCek(cek: CekRow): Promise<void> {
    await this.#insertCek(cek);
    await this.#rows(
      'UPDATE customers SET primary_cek = $3 WHERE org = $1 AND tenant = $2 AND customer = $4',
      [cek.version, cek.customer],
    );
  }
  async setCekState(customer: string, version: number, state: CekRow['state']): Promise<void> {
    await this.#rows(
      'UPDATE cek_versions SET state = $3 WHERE org = $1 AND tenant = $2 AND customer = $4 AND version = $5',
      [state, customer, version],
    );
  }
  /** Add use counts (summed per version first: UPDATE ... FROM applies one row per target). */
  async addCekUses(rows: readonly { customer: string; version: number; n: number }[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#rows(
      `UPDATE cek_versions c SET uses = c.uses + u.n
         FROM (SELECT customer, version, SUM(n)::bigint AS n
                 FROM unnest($3::text[], $4::int[], $5::bigint[]) AS x(customer, version, n) GROUP BY customer, version) AS u
         WHERE c.org = $1 AND c.tenant = $2 AND c.customer = u.customer AND c.version = u.version`,
      [rows.map((r) => r.customer), rows.map((r) => r.version), rows.map((r) => r.n)],
    );
  }
  /** Replace every given wrapped CEK and tenant key with its rewrapped form (TEK rotation). */
  async rewrapAll(
    ceks: readonly { customer: string; version: number; tekVersion: number; wrapped: Uint8Array }[],
    keys: readonly TenantKeyRow[],
  ): Promise<void> {
    if (ceks.length > 0) {
      await this.#rows(
        `UPDATE cek_versions c SET tek_version = u.tek_version, wrapped = u.wrapped
           FROM unnest($3::text[], $4::int[], $5::int[], $6::bytea[]) AS u(customer, version, tek_version, wrapped)
           WHERE c.org = $1 AND c.tenant = $2 AND c.customer = u.customer AND c.version = u.version`,
        [
          ceks.map((r) => r.customer),
          ceks.map((r) => r.version),
          ceks.map((r) => r.tekVersion),
          ceks.map((r) => r.wrapped),
        ],
      );
    }
    if (keys.length > 0) {
      await this.#rows(
        `UPDATE tenant_keys k SET tek_version = u.tek_version, wrapped = u.wrapped
           FROM unnest($3::text[], $4::int[], $5::int[], $6::bytea[]) AS u(key_id, version, tek_version, wrapped)
           WHERE k.org = $1 AND k.tenant = $2 AND k.key_id = u.key_id AND k.version = u.version`,
        [
          keys.map((r) => r.keyId),
          keys.map((r) => r.version),
          keys.map((r) => r.tekVersion),
          keys.map((r) => r.wrapped),
        ],
      );
    }
  }
  /** Tombstone a customer, delete its CEK versions and its keys; returns the versions deleted. */
  async destroyCustomer(customer: string): Promise<number[]> {
    const gone = await this.#rows(
      'DELETE FROM cek_versions WHERE org = $1 AND tenant = $2 AND customer = $3 RETURNING version',
      [customer],
    );
    await this.#rows(
      `DELETE FROM tenant_key_policies WHERE org = $1 AND tenant = $2
         AND key_id IN (SELECT key_id FROM tenant_keys WHERE org = $1 AND tenant = $2 AND customer = $3)`,
      [customer],
    );
    await this.#rows('DELETE FROM tenant_keys WHERE org = $1 AND tenant = $2 AND customer = $3', [customer]);
    // Its secrets and blind-index pins (unreadable without the CEKs anyway).
    for (const table of ['secret_versions', 'secrets', 'blind_index_ceks']) {
      await this.#rows(`DELETE FROM ${table} WHERE org = $1 AND tenant = $2 AND customer = $3`, [customer]);
    }
    await this.#rows(
      "UPDATE customers SET state = 'destroyed', enabled = false WHERE org = $1 AND tenant = $2 AND customer = $3",
      [customer],
    );
    return gone.map((r) => r.version as number).sort((a, b) => a - b);
  }
  /** Delete every tenant-level row of this tenant (its shred; the SQLite backend deletes the file). */
  async purge(): Promise<void> {
    const tables = [
      'import_jobs',
      'secret_versions',
      'secrets',
      'blind_index_ceks',
      'blind_index_versions',
      'blind_indexes',
      'tenant_key_policies',
      'tenant_keys',
      'cek_versions',
      'customers',
    ];
    for (const table of tables) {
      await this.#rows(`DELETE FROM ${table} WHERE org = $1 AND tenant = $2`);
    }
  }
  async #insertCek(c: CekRow): Promise<void> {
    await this.#rows(
      `INSERT INTO cek_versions (org, tenant, customer, version, tek_version, wrapped, state, created_at, uses)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [c.customer, c.version, c.tekVersion, c.wrapped, c.state, c.createdAt, c.uses],
    );
  }

  // --- tenant_keys and tenant_key_policies (keys/asymmetric-key-store.ts's statements) ---
  /** Insert one key version (a new key, or a rotation); its use count starts at 0. */
  async insertKey(r: Omit<TenantKeyVersionRow, 'uses'>): Promise<void> {
    await this.#rows(
      `INSERT INTO tenant_keys (org, tenant, key_id, version, kind, alg, customer, tek_version, cek_version, uses,
         wrapped, public_key, state, created_at, meta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $14)`,
      [
        r.keyId,
        r.version,
        r.kind,
        r.alg,
        r.customer,
        r.tekVersion,
        r.cekVersion,
        r.wrapped,
        r.publicKey,
        r.state,
        r.createdAt,
        r.meta,
      ],
    );
  }
  async getKey(keyId: string, version: number): Promise<TenantKeyVersionRow | undefined> {
    const sql = 'SELECT * FROM tenant_keys WHERE org = $1 AND tenant = $2 AND key_id = $3 AND version = $4';
    const [r] = await this.#rows(sql, [keyId, version]);
    return r && tenantKeyVersionOf(r);
  }
  /** Every version of one key, oldest first (empty when the key does not exist). */
  async keyVersions(keyId: string): Promise<TenantKeyVersionRow[]> {
    const sql = 'SELECT * FROM tenant_keys WHERE org = $1 AND tenant = $2 AND key_id = $3 ORDER BY version';
    return (await this.#rows(sql, [keyId])).map(tenantKeyVersionOf);
  }
  /** Every version of every key, by key id then version. */
  async allKeys(): Promise<TenantKeyVersionRow[]> {
    const sql = 'SELECT * FROM tenant_keys WHERE org = $1 AND tenant = $2 ORDER BY key_id, version';
    return (await this.#rows(sql)).map(tenantKeyVersionOf);
  }
  /** A key's policy, or undefined when it has none (the keys layer applies its defaults). */
  async keyPolicy(keyId: string): Promise<PolicyRow | undefined> {
    const sql = 'SELECT * FROM tenant_key_policies WHERE org = $1 AND tenant = $2 AND key_id = $3';
    const [r] = await this.#rows(sql, [keyId]);
    return r && policyOf(r);
  }
  async setKeyPolicy(keyId: string, p: PolicyRow): Promise<void> {
    await this.#rows(
      `INSERT INTO tenant_key_policies (org, tenant, key_id, rotation_period_s, usage_limit, min_enc, min_dec)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org, tenant, key_id) DO UPDATE SET rotation_period_s = excluded.rotation_period_s,
           usage_limit = excluded.usage_limit, min_enc = excluded.min_enc, min_dec = excluded.min_dec`,
      [keyId, p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec],
    );
  }
  /** Keys with a rotation period, and that period (for the rotation scan). */
  async periodicKeys(): Promise<{ keyId: string; rotationPeriodS: number }[]> {
    const sql = `SELECT key_id, rotation_period_s FROM tenant_key_policies
                   WHERE org = $1 AND tenant = $2 AND rotation_period_s > 0 ORDER BY key_id`;
    return (await this.#rows(sql)).map((r) => ({
      keyId: r.key_id as string,
      rotationPeriodS: r.rotation_period_s as number,
    }));
  }
  async addKeyUses(rows: readonly { keyId: string; version: number; n: number }[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#rows(
      `UPDATE tenant_keys k SET uses = k.uses + u.n
         FROM (SELECT key_id, version, SUM(n)::bigint AS n
                 FROM unnest($3::text[], $4::int[], $5::bigint[]) AS x(key_id, version, n) GROUP BY key_id, version) AS u
         WHERE k.org = $1 AND k.tenant = $2 AND k.key_id = u.key_id AND k.version = u.version`,
      [rows.map((r) => r.keyId), rows.map((r) => r.version), rows.map((r) => r.n)],
    );
  }
  async setKeyState(keyId: string, version: number, state: string): Promise<void> {
    await this.#rows(
      'UPDATE tenant_keys SET state = $3 WHERE org = $1 AND tenant = $2 AND key_id = $4 AND version = $5',
      [state, keyId, version],
    );
  }
}
