/**
 * PostgreSQL backend of the store (issue 19): every broker's state in one database.
 *
 * Design:
 * - Schema: pg-schema.ts, versioned migrations applied at open (pg-migrate.ts; brokers starting
 *   together serialise on an advisory lock; a schema newer than the build is refused). Registry
 *   tables mirror registry-store.ts; the per-tenant SQLite files become tenant-level tables with
 *   (org, tenant) leading every key.
 * - Isolation: every tenant-level table has FORCEd row-level security keyed on the transaction
 *   settings keybroker.org / keybroker.tenant. withTenant() sets both with set_config(..., true)
 *   (SET LOCAL: they end with the transaction, so a pooled connection never carries one tenant's
 *   context into another's work), and an absent setting matches no row. RLS never binds a
 *   superuser or a BYPASSRLS role, so open() refuses such a role: the broker must connect as an
 *   ordinary role (the tables' owner is fine, FORCE binds it).
 * - API: async mirrors of the SQLite stores with the same method names and row types:
 *   `registry` (PgRegistryStore) for registry rows, `withTenant(org, tenant, fn)` for one
 *   tenant's rows in one transaction (PgTenantStore, which also reaches the registry in that
 *   transaction). The store files beside those get pg-* twins taking one of them:
 *   pg-blind-index-rows.ts, pg-secret-rows.ts (PgTenantStore), pg-shred-intents.ts and
 *   pg-registry-audit-head.ts (PgRegistryStore). Coherence and leadership helpers: PgNotifier
 *   (LISTEN/NOTIFY) and PgAdvisoryLease (pg_try_advisory_lock on a dedicated connection).
 * - Not here yet: the keys layer still calls the SQLite stores synchronously; `serve` refuses
 *   store.backend=postgres until it is wired (config/store-backend.ts).
 */
import pg from 'pg';
import { pgClientConfig } from './pg-connection.ts';
import type { PgConnectionOptions } from './pg-connection.ts';
import { migratePg } from './pg-migrate.ts';
import { pgNotify } from './pg-notifier.ts';
import { PgRegistryStore } from './pg-registry-store.ts';
import { PG_MIGRATIONS } from './pg-schema.ts';
import { PgTenantStore } from './pg-tenant-store.ts';
import { scopedClient, transaction } from './pg-transaction.ts';

export interface PostgresStoreOptions extends PgConnectionOptions {
  /** Pool size (connections to the server); default 10. */
  readonly maxConnections?: number;
  /** An idle pooled connection failed (server restart, network): told here, e.g. to log it. */
  readonly onIdleError?: (e: Error) => void;
}

export class PostgresStore {
  readonly pool: pg.Pool;
  /** Registry rows; each call autocommits, `registry.tx(fn)` groups calls in one transaction. */
  readonly registry: PgRegistryStore;
  /** Schema version in force after open. */
  readonly schemaVersion: number;

  private constructor(pool: pg.Pool, schemaVersion: number) {
    this.pool = pool;
    this.schemaVersion = schemaVersion;
    this.registry = new PgRegistryStore(pool, pool);
  }

  /** Connect, refuse a role that row-level security would not bind, and migrate the schema. */
  static async open(o: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = new pg.Pool({ ...pgClientConfig(o), max: o.maxConnections ?? 10 });
    // An idle client that loses its connection emits 'error' on the pool: without a listener
    // that would crash the process; the pool drops the client and the next checkout reconnects.
    const onIdleError = o.onIdleError ?? (() => undefined);
    pool.on('error', onIdleError);
    try {
      const r = await pool.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
        'SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user',
      );
      const role = r.rows[0];
      if (role === undefined || role.rolsuper || role.rolbypassrls) {
        throw new Error(
          'the PostgreSQL role is a superuser or has BYPASSRLS: row-level security would not isolate tenants; connect as an ordinary role',
        );
      }
      const version = await migratePg(pool, PG_MIGRATIONS);
      return new PostgresStore(pool, version);
    } catch (e) {
      await pool.end();
      throw e;
    }
  }

  /**
   * fn with one tenant's rows, in one transaction whose keybroker.org/tenant are set (SET LOCAL):
   * committed when fn resolves, rolled back when it throws. The store handed to fn is dead after.
   */
  async withTenant<T>(org: string, tenant: string, fn: (t: PgTenantStore) => Promise<T>): Promise<T> {
    // '' would read as "no tenant" to the policies; refuse it rather than run unscoped.
    if (org === '' || tenant === '') throw new Error('withTenant needs an org and a tenant');
    return await transaction(this.pool, async (c) => {
      await c.query(
        "SELECT set_config('keybroker.org', $1, true), set_config('keybroker.tenant', $2, true)",
        [org, tenant],
      );
      const scoped = scopedClient(c);
      try {
        return await fn(new PgTenantStore(scoped.db, org, tenant));
      } finally {
        scoped.end();
      }
    });
  }

  /** A notification outside any transaction (inside one: PgTenantStore.notify, sent at commit). */
  async notify(channel: string, payload: string): Promise<void> {
    await pgNotify(this.pool, channel, payload);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
