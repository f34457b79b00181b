/**
 * The registry on PostgreSQL: the async mirror of registry-store.ts (same method names, same row
 * types, same StaleOekError). Registry tables are not tenant-level: the shred epoch and the
 * rotation scan read across tenants, so they carry no row-level security. Batches are one
 * statement over unnest() arrays, not one round trip per row.
 */
import type pg from 'pg';
import { StaleOekError } from '../registry-store.ts';
import type { EpochRow, OekRow, OrgRow, PolicyRow, ShredRow, TekRow, TenantRow } from '../registry-rows.ts';
import type { PgQueryable, PgRaw } from './pg-connection.ts';
import { epochOf, oekOf, orgOf, shredOf, tekOf, tenantOf } from './pg-rows.ts';
import { scopedClient, transaction } from './pg-transaction.ts';

export class PgRegistryStore {
  readonly #db: PgQueryable;
  /** Set when this store is not inside a transaction (tx() then opens one). */
  readonly #pool: pg.Pool | undefined;

  /** `pool`: statements autocommit and tx() opens transactions; a client alone: inside one. */
  constructor(db: PgQueryable, pool?: pg.Pool) {
    this.#db = db;
    this.#pool = pool;
  }

  /** fn in one transaction; a store already inside one joins it (as SQLite nests). */
  async tx<T>(fn: (r: PgRegistryStore) => Promise<T>): Promise<T> {
    if (this.#pool === undefined) return await fn(this);
    return await transaction(this.#pool, async (c) => {
      const scoped = scopedClient(c);
      try {
        return await fn(new PgRegistryStore(scoped.db));
      } finally {
        scoped.end();
      }
    });
  }

  /** SQL as given, on this store's connection or transaction (pg-shred-intents.ts etc. use it). */
  async query(sql: string, values: unknown[] = []): Promise<PgRaw[]> {
    return await this.#rows(sql, values);
  }

  async #rows(sql: string, values: unknown[] = []): Promise<PgRaw[]> {
    return (await this.#db.query<PgRaw>(sql, values)).rows;
  }
  async #run(sql: string, values: unknown[] = []): Promise<number> {
    return (await this.#db.query(sql, values)).rowCount ?? 0;
  }

  // --- orgs and OEK versions ---
  async insertOrg(o: OrgRow, oek: OekRow): Promise<void> {
    await this.tx(async (r) => {
      await r.#run(
        `INSERT INTO orgs (org, enabled, created_at, primary_oek, rotation_period_s, usage_limit, min_enc, min_dec)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [o.org, o.enabled, o.createdAt, o.primaryOek, o.rotationPeriodS, o.usageLimit, o.minEnc, o.minDec],
      );
      await r.insertOek(oek);
    });
  }
  async getOrg(org: string): Promise<OrgRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM orgs WHERE org = $1', [org]);
    return r && orgOf(r);
  }
  async listOrgs(): Promise<OrgRow[]> {
    return (await this.#rows('SELECT * FROM orgs ORDER BY org')).map(orgOf);
  }
  async setOrgEnabled(org: string, enabled: boolean): Promise<void> {
    await this.#run('UPDATE orgs SET enabled = $1 WHERE org = $2', [enabled, org]);
  }
  async insertOek(o: OekRow): Promise<void> {
    await this.#run(
      'INSERT INTO oek_versions (org, version, hsm_label, state, created_at, destroyed_at) VALUES ($1, $2, $3, $4, $5, $6)',
      [o.org, o.version, o.hsmLabel, o.state, o.createdAt, o.destroyedAt],
    );
  }
  async listOeks(org: string): Promise<OekRow[]> {
    return (await this.#rows('SELECT * FROM oek_versions WHERE org = $1 ORDER BY version', [org])).map(oekOf);
  }
  async getOek(org: string, version: number): Promise<OekRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM oek_versions WHERE org = $1 AND version = $2', [
      org,
      version,
    ]);
    return r && oekOf(r);
  }
  async setOekState(org: string, version: number, state: OekRow['state'], at: string | null): Promise<void> {
    await this.#run(
      'UPDATE oek_versions SET state = $1, destroyed_at = COALESCE($2, destroyed_at) WHERE org = $3 AND version = $4',
      [state, at, org, version],
    );
  }
  async setPrimaryOek(org: string, version: number): Promise<void> {
    await this.#run('UPDATE orgs SET primary_oek = $1 WHERE org = $2', [version, org]);
  }

  // --- tenants and TEK versions ---
  async insertTenant(t: TenantRow, tek: TekRow): Promise<void> {
    await this.tx(async (r) => {
      await r.#assertPrimaryOek(t.org, tek.oekVersion);
      await r.#insertTenantRow(t, false);
      await r.#insertTek(tek);
    });
  }
  /**
   * Insert many tenants (each with its first TEK row) in one transaction. A name that exists by
   * now is skipped and returned; throws StaleOekError if their OEK is no longer primary.
   */
  async insertTenants(rows: readonly { tenant: TenantRow; tek: TekRow }[]): Promise<Set<string>> {
    return await this.tx(async (r) => {
      const skipped = new Set<string>();
      for (const { tenant: t, tek } of rows) {
        await r.#assertPrimaryOek(t.org, tek.oekVersion);
        if (!(await r.#insertTenantRow(t, true))) {
          skipped.add(t.tenant);
          continue;
        }
        await r.#insertTek(tek);
      }
      return skipped;
    });
  }
  async getTenant(org: string, tenant: string): Promise<TenantRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM tenants WHERE org = $1 AND tenant = $2', [org, tenant]);
    return r && tenantOf(r);
  }
  async listTenants(org: string): Promise<TenantRow[]> {
    return (await this.#rows('SELECT * FROM tenants WHERE org = $1 ORDER BY tenant', [org])).map(tenantOf);
  }
  async listActiveTenants(): Promise<TenantRow[]> {
    return (await this.#rows("SELECT * FROM tenants WHERE state = 'active'")).map(tenantOf);
  }
  async listDestroyedTenants(): Promise<TenantRow[]> {
    return (await this.#rows("SELECT * FROM tenants WHERE state = 'destroyed'")).map(tenantOf);
  }
  async setTenantEnabled(org: string, tenant: string, enabled: boolean): Promise<void> {
    await this.#run('UPDATE tenants SET enabled = $1 WHERE org = $2 AND tenant = $3', [enabled, org, tenant]);
  }
  async setTenantPolicy(org: string, tenant: string, p: PolicyRow): Promise<void> {
    await this.#run(
      'UPDATE tenants SET rotation_period_s = $1, usage_limit = $2, min_enc = $3, min_dec = $4 WHERE org = $5 AND tenant = $6',
      [p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec, org, tenant],
    );
  }
  async getTek(org: string, tenant: string, version: number): Promise<TekRow | undefined> {
    const [r] = await this.#rows(
      'SELECT * FROM tek_versions WHERE org = $1 AND tenant = $2 AND version = $3',
      [org, tenant, version],
    );
    return r && tekOf(r);
  }
  async listTeks(org: string, tenant: string): Promise<TekRow[]> {
    const sql = 'SELECT * FROM tek_versions WHERE org = $1 AND tenant = $2 ORDER BY version';
    return (await this.#rows(sql, [org, tenant])).map(tekOf);
  }
  /** Add a TEK version (not yet primary). Throws StaleOekError if its OEK is no longer primary. */
  async insertTek(tek: TekRow): Promise<void> {
    await this.tx(async (r) => {
      await r.#assertPrimaryOek(tek.org, tek.oekVersion);
      await r.#insertTek(tek);
    });
  }
  async setPrimaryTek(org: string, tenant: string, version: number): Promise<void> {
    await this.#run('UPDATE tenants SET primary_tek = $1 WHERE org = $2 AND tenant = $3', [
      version,
      org,
      tenant,
    ]);
  }
  async setTekState(org: string, tenant: string, version: number, state: TekRow['state']): Promise<void> {
    await this.#run('UPDATE tek_versions SET state = $1 WHERE org = $2 AND tenant = $3 AND version = $4', [
      state,
      org,
      tenant,
      version,
    ]);
  }
  async deleteTeksBelow(org: string, tenant: string, version: number): Promise<number[]> {
    const sql = 'DELETE FROM tek_versions WHERE org = $1 AND tenant = $2 AND version < $3 RETURNING version';
    return (await this.#rows(sql, [org, tenant, version]))
      .map((r) => r.version as number)
      .sort((a, b) => a - b);
  }
  /** Add use counts (a version named twice gets both: UPDATE ... FROM applies one row per target). */
  async addTekUses(
    rows: readonly { org: string; tenant: string; version: number; n: number }[],
  ): Promise<void> {
    if (rows.length === 0) return;
    await this.#run(
      `UPDATE tek_versions t SET uses = t.uses + u.n
         FROM (SELECT org, tenant, version, SUM(n)::bigint AS n
                 FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS x(org, tenant, version, n)
                 GROUP BY org, tenant, version) AS u
         WHERE t.org = u.org AND t.tenant = u.tenant AND t.version = u.version`,
      [rows.map((r) => r.org), rows.map((r) => r.tenant), rows.map((r) => r.version), rows.map((r) => r.n)],
    );
  }
  /** TEK rows of an org still wrapped under some other OEK version than `oekVersion`. */
  async listTeksNotUnder(org: string, oekVersion: number, limit: number): Promise<TekRow[]> {
    const sql = 'SELECT * FROM tek_versions WHERE org = $1 AND oek_version <> $2 LIMIT $3';
    return (await this.#rows(sql, [org, oekVersion, limit])).map(tekOf);
  }
  async countTeksNotUnder(org: string, oekVersion: number): Promise<number> {
    const sql = 'SELECT COUNT(*)::int AS n FROM tek_versions WHERE org = $1 AND oek_version <> $2';
    const [r] = await this.#rows(sql, [org, oekVersion]);
    return (r?.n as number | undefined) ?? 0;
  }
  /** Replace wrapped TEKs (one statement); only rows still under the OEK they were read under. */
  async rewrapTeks(
    rows: readonly {
      org: string;
      tenant: string;
      version: number;
      fromOek: number;
      toOek: number;
      wrapped: Uint8Array;
    }[],
  ): Promise<void> {
    if (rows.length === 0) return;
    await this.#run(
      `UPDATE tek_versions t SET oek_version = u.to_oek, wrapped = u.wrapped
         FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::bytea[])
           AS u(org, tenant, version, from_oek, to_oek, wrapped)
         WHERE t.org = u.org AND t.tenant = u.tenant AND t.version = u.version AND t.oek_version = u.from_oek`,
      [
        rows.map((r) => r.org),
        rows.map((r) => r.tenant),
        rows.map((r) => r.version),
        rows.map((r) => r.fromOek),
        rows.map((r) => r.toOek),
        rows.map((r) => r.wrapped),
      ],
    );
  }
  /** Inserts the row; when the tenant exists: false with skipExisting, else the unique violation. */
  async #insertTenantRow(t: TenantRow, skipExisting: boolean): Promise<boolean> {
    const n = await this.#run(
      `INSERT INTO tenants (org, tenant, enabled, state, created_at, primary_tek, file_name,
           rotation_period_s, usage_limit, min_enc, min_dec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ${skipExisting ? 'ON CONFLICT (org, tenant) DO NOTHING' : ''}`,
      [
        t.org,
        t.tenant,
        t.enabled,
        t.state,
        t.createdAt,
        t.primaryTek,
        t.fileName,
        t.rotationPeriodS,
        t.usageLimit,
        t.minEnc,
        t.minDec,
      ],
    );
    return n === 1;
  }
  async #insertTek(t: TekRow): Promise<void> {
    await this.#run(
      'INSERT INTO tek_versions (org, tenant, version, oek_version, wrapped, state, created_at, uses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [t.org, t.tenant, t.version, t.oekVersion, t.wrapped, t.state, t.createdAt, t.uses],
    );
  }
  /** Share-locks the org row: an OEK rotation (UPDATE orgs) waits until this transaction ends. */
  async #assertPrimaryOek(org: string, oekVersion: number): Promise<void> {
    const [r] = await this.#rows('SELECT primary_oek FROM orgs WHERE org = $1 FOR SHARE', [org]);
    if (r?.primary_oek !== oekVersion) throw new StaleOekError('OEK rotated while wrapping');
  }

  // --- shred epochs and the shred log ---
  async insertEpoch(e: Omit<EpochRow, 'id' | 'completedAt'>): Promise<number> {
    const [r] = await this.#rows(
      `INSERT INTO shred_epochs (org, state, destroy_old, new_oek, new_label, old_oeks, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [e.org, e.state, e.destroyOld, e.newOek, e.newLabel, [...e.oldOeks], e.createdAt],
    );
    return r?.id as number;
  }
  async getEpoch(id: number): Promise<EpochRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM shred_epochs WHERE id = $1', [id]);
    return r && epochOf(r);
  }
  async listUnfinishedEpochs(): Promise<EpochRow[]> {
    return (await this.#rows("SELECT * FROM shred_epochs WHERE state <> 'done' ORDER BY id")).map(epochOf);
  }
  /** A new label for an epoch still generating its OEK (the old one may name a half-made object). */
  async setEpochLabel(id: number, label: string): Promise<void> {
    await this.#run("UPDATE shred_epochs SET new_label = $1 WHERE id = $2 AND state = 'generating'", [
      label,
      id,
    ]);
  }
  async setEpochState(id: number, state: EpochRow['state'], completedAt: string | null): Promise<void> {
    await this.#run('UPDATE shred_epochs SET state = $1, completed_at = $2 WHERE id = $3', [
      state,
      completedAt,
      id,
    ]);
  }
  async insertShred(s: Omit<ShredRow, 'id' | 'epochId' | 'receipt'>): Promise<number> {
    const [r] = await this.#rows(
      `INSERT INTO shred_log (kind, org, tenant, customer, state, requested_at, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [s.kind, s.org, s.tenant, s.customer, s.state, s.requestedAt, s.detail],
    );
    return r?.id as number;
  }
  async updateShred(
    id: number,
    u: { state: ShredRow['state']; detail?: string; epochId?: number; receipt?: string },
  ): Promise<void> {
    await this.#run(
      `UPDATE shred_log SET state = $1, detail = COALESCE($2, detail), epoch_id = COALESCE($3, epoch_id),
         receipt = COALESCE($4, receipt) WHERE id = $5`,
      [u.state, u.detail ?? null, u.epochId ?? null, u.receipt ?? null, id],
    );
  }
  async listUnfinishedShreds(): Promise<ShredRow[]> {
    return (await this.#rows("SELECT * FROM shred_log WHERE state <> 'done' ORDER BY id")).map(shredOf);
  }
  async getShred(id: number): Promise<ShredRow | undefined> {
    const [r] = await this.#rows('SELECT * FROM shred_log WHERE id = $1', [id]);
    return r && shredOf(r);
  }
  /**
   * Destroy a tenant in the registry: tombstone + every wrapped TEK row + shred-log entry,
   * atomically. (Its tenant-level rows go with PgTenantStore.purge, in the same transaction
   * when called through PostgresStore.withTenant's `registry`.)
   */
  async markTenantDestroyed(
    org: string,
    tenant: string,
    requestedAt: string,
    detail: string,
  ): Promise<number> {
    return await this.tx(async (r) => {
      await r.#run("UPDATE tenants SET state = 'destroyed', enabled = false WHERE org = $1 AND tenant = $2", [
        org,
        tenant,
      ]);
      await r.#run('DELETE FROM tek_versions WHERE org = $1 AND tenant = $2', [org, tenant]);
      return await r.insertShred({
        kind: 'tenant',
        org,
        tenant,
        customer: null,
        state: 'epoch',
        requestedAt,
        detail,
      });
    });
  }

  // --- broker metadata ---
  /** A broker_meta value, set to `make()` on first use (a broker racing for it gets the winner's). */
  async metaValue(name: string, make: () => string): Promise<string> {
    const [had] = await this.#rows('SELECT value FROM broker_meta WHERE name = $1', [name]);
    if (had) return had.value as string;
    await this.#run('INSERT INTO broker_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
      name,
      make(),
    ]);
    const [r] = await this.#rows('SELECT value FROM broker_meta WHERE name = $1', [name]);
    return r?.value as string;
  }

  // --- broker keys ---
  async getBrokerKey(name: string): Promise<{ hsmLabel: string; alg: string; spki: Uint8Array } | undefined> {
    const [r] = await this.#rows('SELECT * FROM broker_keys WHERE name = $1', [name]);
    return (
      r && { hsmLabel: r.hsm_label as string, alg: r.alg as string, spki: new Uint8Array(r.spki as Buffer) }
    );
  }
  async insertBrokerKey(name: string, hsmLabel: string, alg: string, spki: Uint8Array): Promise<void> {
    await this.#run('INSERT INTO broker_keys (name, hsm_label, alg, spki) VALUES ($1, $2, $3, $4)', [
      name,
      hsmLabel,
      alg,
      spki,
    ]);
  }
}
