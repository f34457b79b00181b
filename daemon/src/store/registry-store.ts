/**
 * The registry database: orgs, OEK versions (the HSM label behind each), tenants, wrapped TEK
 * versions, shred epochs and the shred log, and the broker's own HSM keys. One file, WAL,
 * synchronous=FULL: a key is acknowledged only once its row is durable.
 */
import Database from 'better-sqlite3';
import { applyDurablePragmas, migrate } from './migrations.ts';
import type { Migration } from './migrations.ts';
import { epochOf, oekOf, orgOf, shredOf, tekOf, tenantOf } from './registry-rows.ts';
import type {
  EpochRow,
  OekRow,
  OrgRow,
  PolicyRow,
  Raw,
  ShredRow,
  TekRow,
  TenantRow,
} from './registry-rows.ts';

export type { EpochRow, OekRow, OrgRow, PolicyRow, ShredRow, TekRow, TenantRow } from './registry-rows.ts';

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE orgs (
  org TEXT PRIMARY KEY, enabled INTEGER NOT NULL, created_at TEXT NOT NULL, primary_oek INTEGER NOT NULL,
  rotation_period_s INTEGER NOT NULL, usage_limit INTEGER NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL);
CREATE TABLE oek_versions (
  org TEXT NOT NULL REFERENCES orgs(org), version INTEGER NOT NULL, hsm_label TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL CHECK (state IN ('enabled','retired','destroyed')),
  created_at TEXT NOT NULL, destroyed_at TEXT, PRIMARY KEY (org, version));
CREATE TABLE tenants (
  org TEXT NOT NULL REFERENCES orgs(org), tenant TEXT NOT NULL, enabled INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active','destroyed')), created_at TEXT NOT NULL,
  primary_tek INTEGER NOT NULL, file_name TEXT NOT NULL,
  rotation_period_s INTEGER NOT NULL, usage_limit INTEGER NOT NULL, min_enc INTEGER NOT NULL, min_dec INTEGER NOT NULL,
  PRIMARY KEY (org, tenant));
CREATE TABLE tek_versions (
  org TEXT NOT NULL, tenant TEXT NOT NULL, version INTEGER NOT NULL, oek_version INTEGER NOT NULL,
  wrapped BLOB NOT NULL, state TEXT NOT NULL CHECK (state IN ('enabled','disabled')),
  created_at TEXT NOT NULL, uses INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org, tenant, version), FOREIGN KEY (org, tenant) REFERENCES tenants(org, tenant));
CREATE INDEX tek_by_oek ON tek_versions (org, oek_version);
CREATE TABLE shred_epochs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, org TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('generating','rewrapping','destroying','done')),
  destroy_old INTEGER NOT NULL, new_oek INTEGER NOT NULL, new_label TEXT NOT NULL, old_oeks TEXT NOT NULL,
  created_at TEXT NOT NULL, completed_at TEXT);
CREATE TABLE shred_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL CHECK (kind IN ('tenant','customer')),
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT,
  state TEXT NOT NULL CHECK (state IN ('tek-rotation','epoch','done')),
  requested_at TEXT NOT NULL, detail TEXT NOT NULL, epoch_id INTEGER, receipt TEXT);
CREATE TABLE broker_keys (name TEXT PRIMARY KEY, hsm_label TEXT NOT NULL, alg TEXT NOT NULL, spki BLOB NOT NULL);
`,
  },
  {
    // broker_meta: the broker instance id (named in receipts). shred_intents: a destroy recorded
    // before its first destruction, so a crash anywhere in it resumes (see shred-intents.ts).
    version: 2,
    sql: `
CREATE TABLE broker_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shred_intents (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL CHECK (kind IN ('tenant','customer')),
  org TEXT NOT NULL, tenant TEXT NOT NULL, customer TEXT, approval_id TEXT,
  state TEXT NOT NULL CHECK (state IN ('pending','started','abandoned')),
  requested_at TEXT NOT NULL, shred_id INTEGER);
CREATE INDEX shred_intents_by_approval ON shred_intents (approval_id);
`,
  },
  {
    // The audit log's pinned head (audit/audit-head.ts): the last signed checkpoint, kept apart
    // from the log so a cut or forged tail is found at the next open.
    version: 3,
    sql: `
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running','stopped','reset')), updated_at TEXT NOT NULL);
`,
  },
  {
    // serve --workers: each worker's audit chain (audit-w1.log, ...) has its own pinned head.
    version: 4,
    sql: `
CREATE TABLE audit_chain_heads (
  chain TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running','stopped','reset')), updated_at TEXT NOT NULL);
`,
  },
];

/** Thrown inside a transaction when the OEK a TEK was wrapped under is no longer the primary. */
export class StaleOekError extends Error {}

/** Synchronous access to the registry; every write is one durable transaction. */
export class RegistryStore {
  readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  static open(path: string): RegistryStore {
    const db = new Database(path);
    applyDurablePragmas(db);
    migrate(db, MIGRATIONS);
    return new RegistryStore(db);
  }

  close(): void {
    this.db.close();
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

  // --- orgs and OEK versions ---
  insertOrg(o: OrgRow, oek: OekRow): void {
    this.tx(() => {
      this.st(
        `INSERT INTO orgs (org, enabled, created_at, primary_oek, rotation_period_s, usage_limit, min_enc, min_dec)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        o.org,
        o.enabled ? 1 : 0,
        o.createdAt,
        o.primaryOek,
        o.rotationPeriodS,
        o.usageLimit,
        o.minEnc,
        o.minDec,
      );
      this.insertOek(oek);
    });
  }
  getOrg(org: string): OrgRow | undefined {
    const r = this.st('SELECT * FROM orgs WHERE org = ?').get(org) as Raw | undefined;
    return r && orgOf(r);
  }
  listOrgs(): OrgRow[] {
    return (this.st('SELECT * FROM orgs ORDER BY org').all() as Raw[]).map(orgOf);
  }
  setOrgEnabled(org: string, enabled: boolean): void {
    this.st('UPDATE orgs SET enabled = ? WHERE org = ?').run(enabled ? 1 : 0, org);
  }
  insertOek(o: OekRow): void {
    this.st(
      'INSERT INTO oek_versions (org, version, hsm_label, state, created_at, destroyed_at) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(o.org, o.version, o.hsmLabel, o.state, o.createdAt, o.destroyedAt);
  }
  listOeks(org: string): OekRow[] {
    return (this.st('SELECT * FROM oek_versions WHERE org = ? ORDER BY version').all(org) as Raw[]).map(
      oekOf,
    );
  }
  getOek(org: string, version: number): OekRow | undefined {
    const r = this.st('SELECT * FROM oek_versions WHERE org = ? AND version = ?').get(org, version) as
      Raw | undefined;
    return r && oekOf(r);
  }
  setOekState(org: string, version: number, state: OekRow['state'], at: string | null): void {
    this.st(
      'UPDATE oek_versions SET state = ?, destroyed_at = COALESCE(?, destroyed_at) WHERE org = ? AND version = ?',
    ).run(state, at, org, version);
  }
  setPrimaryOek(org: string, version: number): void {
    this.st('UPDATE orgs SET primary_oek = ? WHERE org = ?').run(version, org);
  }

  // --- tenants and TEK versions ---
  insertTenant(t: TenantRow, tek: TekRow): void {
    this.tx(() => {
      this.#assertPrimaryOek(t.org, tek.oekVersion);
      this.#insertTenantRow(t);
      this.#insertTek(tek);
    });
  }
  /**
   * Insert many tenants (each with its first TEK row) in ONE durable transaction: one fsync for
   * the batch. A name that exists by now (a concurrent CreateTenant) is skipped and returned; the
   * rest commit together or not at all. Throws StaleOekError if their OEK is no longer primary.
   */
  insertTenants(rows: readonly { tenant: TenantRow; tek: TekRow }[]): Set<string> {
    return this.tx(() => {
      const skipped = new Set<string>();
      for (const { tenant: t, tek } of rows) {
        // Per row: an OEK rotation may have committed between two wraps of the batch.
        this.#assertPrimaryOek(t.org, tek.oekVersion);
        if (this.getTenant(t.org, t.tenant)) {
          skipped.add(t.tenant);
          continue;
        }
        this.#insertTenantRow(t);
        this.#insertTek(tek);
      }
      return skipped;
    });
  }
  getTenant(org: string, tenant: string): TenantRow | undefined {
    const r = this.st('SELECT * FROM tenants WHERE org = ? AND tenant = ?').get(org, tenant) as
      Raw | undefined;
    return r && tenantOf(r);
  }
  listTenants(org: string): TenantRow[] {
    return (this.st('SELECT * FROM tenants WHERE org = ? ORDER BY tenant').all(org) as Raw[]).map(tenantOf);
  }
  listActiveTenants(): TenantRow[] {
    return (this.st("SELECT * FROM tenants WHERE state = 'active'").all() as Raw[]).map(tenantOf);
  }
  listDestroyedTenants(): TenantRow[] {
    return (this.st("SELECT * FROM tenants WHERE state = 'destroyed'").all() as Raw[]).map(tenantOf);
  }
  setTenantEnabled(org: string, tenant: string, enabled: boolean): void {
    this.st('UPDATE tenants SET enabled = ? WHERE org = ? AND tenant = ?').run(enabled ? 1 : 0, org, tenant);
  }
  setTenantPolicy(org: string, tenant: string, p: PolicyRow): void {
    this.st(
      'UPDATE tenants SET rotation_period_s = ?, usage_limit = ?, min_enc = ?, min_dec = ? WHERE org = ? AND tenant = ?',
    ).run(p.rotationPeriodS, p.usageLimit, p.minEnc, p.minDec, org, tenant);
  }
  getTek(org: string, tenant: string, version: number): TekRow | undefined {
    const r = this.st('SELECT * FROM tek_versions WHERE org = ? AND tenant = ? AND version = ?').get(
      org,
      tenant,
      version,
    ) as Raw | undefined;
    return r && tekOf(r);
  }
  listTeks(org: string, tenant: string): TekRow[] {
    return (
      this.st('SELECT * FROM tek_versions WHERE org = ? AND tenant = ? ORDER BY version').all(
        org,
        tenant,
      ) as Raw[]
    ).map(tekOf);
  }
  /** Add a TEK version (not yet primary). Throws StaleOekError if its OEK is no longer primary. */
  insertTek(tek: TekRow): void {
    this.tx(() => {
      this.#assertPrimaryOek(tek.org, tek.oekVersion);
      this.#insertTek(tek);
    });
  }
  setPrimaryTek(org: string, tenant: string, version: number): void {
    this.st('UPDATE tenants SET primary_tek = ? WHERE org = ? AND tenant = ?').run(version, org, tenant);
  }
  setTekState(org: string, tenant: string, version: number, state: TekRow['state']): void {
    this.st('UPDATE tek_versions SET state = ? WHERE org = ? AND tenant = ? AND version = ?').run(
      state,
      org,
      tenant,
      version,
    );
  }
  deleteTeksBelow(org: string, tenant: string, version: number): number[] {
    const gone = (
      this.st('SELECT version FROM tek_versions WHERE org = ? AND tenant = ? AND version < ?').all(
        org,
        tenant,
        version,
      ) as { version: number }[]
    ).map((r) => r.version);
    this.st('DELETE FROM tek_versions WHERE org = ? AND tenant = ? AND version < ?').run(
      org,
      tenant,
      version,
    );
    return gone;
  }
  addTekUses(rows: readonly { org: string; tenant: string; version: number; n: number }[]): void {
    const st = this.st(
      'UPDATE tek_versions SET uses = uses + ? WHERE org = ? AND tenant = ? AND version = ?',
    );
    this.tx(() => {
      for (const r of rows) st.run(r.n, r.org, r.tenant, r.version);
    });
  }
  /** TEK rows of an org still wrapped under some other OEK version than `oekVersion`. */
  listTeksNotUnder(org: string, oekVersion: number, limit: number): TekRow[] {
    return (
      this.st('SELECT * FROM tek_versions WHERE org = ? AND oek_version != ? LIMIT ?').all(
        org,
        oekVersion,
        limit,
      ) as Raw[]
    ).map(tekOf);
  }
  countTeksNotUnder(org: string, oekVersion: number): number {
    return (
      this.st('SELECT COUNT(*) AS n FROM tek_versions WHERE org = ? AND oek_version != ?').get(
        org,
        oekVersion,
      ) as {
        n: number;
      }
    ).n;
  }
  /** Replace wrapped TEKs (one transaction); only rows still under the OEK they were read under. */
  rewrapTeks(
    rows: readonly {
      org: string;
      tenant: string;
      version: number;
      fromOek: number;
      toOek: number;
      wrapped: Uint8Array;
    }[],
  ): void {
    const st = this.st(
      'UPDATE tek_versions SET oek_version = ?, wrapped = ? WHERE org = ? AND tenant = ? AND version = ? AND oek_version = ?',
    );
    this.tx(() => {
      for (const r of rows) st.run(r.toOek, r.wrapped, r.org, r.tenant, r.version, r.fromOek);
    });
  }
  #insertTenantRow(t: TenantRow): void {
    this.st(
      `INSERT INTO tenants (org, tenant, enabled, state, created_at, primary_tek, file_name,
           rotation_period_s, usage_limit, min_enc, min_dec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      t.org,
      t.tenant,
      t.enabled ? 1 : 0,
      t.state,
      t.createdAt,
      t.primaryTek,
      t.fileName,
      t.rotationPeriodS,
      t.usageLimit,
      t.minEnc,
      t.minDec,
    );
  }
  #insertTek(t: TekRow): void {
    this.st(
      'INSERT INTO tek_versions (org, tenant, version, oek_version, wrapped, state, created_at, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(t.org, t.tenant, t.version, t.oekVersion, t.wrapped, t.state, t.createdAt, t.uses);
  }
  #assertPrimaryOek(org: string, oekVersion: number): void {
    const o = this.getOrg(org);
    if (!o || o.primaryOek !== oekVersion) throw new StaleOekError('OEK rotated while wrapping');
  }

  // --- shred epochs and the shred log ---
  insertEpoch(e: Omit<EpochRow, 'id' | 'completedAt'>): number {
    const r = this.st(
      'INSERT INTO shred_epochs (org, state, destroy_old, new_oek, new_label, old_oeks, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(e.org, e.state, e.destroyOld ? 1 : 0, e.newOek, e.newLabel, JSON.stringify(e.oldOeks), e.createdAt);
    return Number(r.lastInsertRowid);
  }
  getEpoch(id: number): EpochRow | undefined {
    const r = this.st('SELECT * FROM shred_epochs WHERE id = ?').get(id) as Raw | undefined;
    return r && epochOf(r);
  }
  listUnfinishedEpochs(): EpochRow[] {
    return (this.st("SELECT * FROM shred_epochs WHERE state != 'done' ORDER BY id").all() as Raw[]).map(
      epochOf,
    );
  }
  /** A new label for an epoch still generating its OEK (the old one may name a half-made object). */
  setEpochLabel(id: number, label: string): void {
    this.st("UPDATE shred_epochs SET new_label = ? WHERE id = ? AND state = 'generating'").run(label, id);
  }
  setEpochState(id: number, state: EpochRow['state'], completedAt: string | null): void {
    this.st('UPDATE shred_epochs SET state = ?, completed_at = ? WHERE id = ?').run(state, completedAt, id);
  }
  insertShred(s: Omit<ShredRow, 'id' | 'epochId' | 'receipt'>): number {
    const r = this.st(
      'INSERT INTO shred_log (kind, org, tenant, customer, state, requested_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(s.kind, s.org, s.tenant, s.customer, s.state, s.requestedAt, s.detail);
    return Number(r.lastInsertRowid);
  }
  updateShred(
    id: number,
    u: { state: ShredRow['state']; detail?: string; epochId?: number; receipt?: string },
  ): void {
    this.st(
      'UPDATE shred_log SET state = ?, detail = COALESCE(?, detail), epoch_id = COALESCE(?, epoch_id), receipt = COALESCE(?, receipt) WHERE id = ?',
    ).run(u.state, u.detail ?? null, u.epochId ?? null, u.receipt ?? null, id);
  }
  listUnfinishedShreds(): ShredRow[] {
    return (this.st("SELECT * FROM shred_log WHERE state != 'done' ORDER BY id").all() as Raw[]).map(shredOf);
  }
  getShred(id: number): ShredRow | undefined {
    const r = this.st('SELECT * FROM shred_log WHERE id = ?').get(id) as Raw | undefined;
    return r && shredOf(r);
  }
  /** Destroy a tenant in the registry: tombstone + every wrapped TEK row + shred-log entry, atomically. */
  markTenantDestroyed(org: string, tenant: string, requestedAt: string, detail: string): number {
    return this.tx(() => {
      this.st("UPDATE tenants SET state = 'destroyed', enabled = 0 WHERE org = ? AND tenant = ?").run(
        org,
        tenant,
      );
      this.st('DELETE FROM tek_versions WHERE org = ? AND tenant = ?').run(org, tenant);
      return this.insertShred({
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
  /** A broker_meta value, set to `make()` (durably) on first use. */
  metaValue(name: string, make: () => string): string {
    return this.tx(() => {
      const r = this.st('SELECT value FROM broker_meta WHERE name = ?').get(name) as
        { value: string } | undefined;
      if (r) return r.value;
      const v = make();
      this.st('INSERT INTO broker_meta (name, value) VALUES (?, ?)').run(name, v);
      return v;
    });
  }

  // --- broker keys ---
  getBrokerKey(name: string): { hsmLabel: string; alg: string; spki: Uint8Array } | undefined {
    const r = this.st('SELECT * FROM broker_keys WHERE name = ?').get(name) as Raw | undefined;
    return (
      r && { hsmLabel: r.hsm_label as string, alg: r.alg as string, spki: new Uint8Array(r.spki as Buffer) }
    );
  }
  insertBrokerKey(name: string, hsmLabel: string, alg: string, spki: Uint8Array): void {
    this.st('INSERT INTO broker_keys (name, hsm_label, alg, spki) VALUES (?, ?, ?, ?)').run(
      name,
      hsmLabel,
      alg,
      spki,
    );
  }
}
