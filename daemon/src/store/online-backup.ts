/**
 * Online backup of a data dir while the daemon serves: every tenant file, then the registry,
 * each copied with SQLite's online backup API (a consistent snapshot of one database, taken
 * page by page beside the daemon's writers, never a file copy of a live WAL database), plus a
 * manifest: checksums, schema versions, the HSM token the keys live in (label, root-key labels),
 * the last shred epoch. Tenant files go first and the registry last, so every TEK a copied
 * tenant file needs is in the copied registry unless a shred removed it meanwhile (which restore
 * then reports). Never copied: the HSM token, PINs, TLS keys, the audit log.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import Database from 'better-sqlite3';
import { writeFilesDurably } from './durable-files.ts';

export const BACKUP_FORMAT = 'keybroker-backup-v1';
export const MANIFEST_FILE = 'manifest.json';
export const REGISTRY_FILE = 'registry.db';

export interface BackupFile {
  /** Relative to the data dir (and the backup dir), "/"-separated. */
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly schemaVersion: number;
}
export interface BackupManifest {
  readonly format: typeof BACKUP_FORMAT;
  readonly createdAt: string;
  readonly registrySchemaVersion: number;
  readonly tenantSchemaVersion: number;
  /** The token the root keys (OEKs) live in; a restore needs it (backups hold no key material). */
  readonly hsm: {
    readonly profile: string;
    readonly tokenLabel: string;
    readonly oekLabels: readonly { readonly org: string; readonly version: number; readonly label: string }[];
  };
  /** The newest shred epoch in the copied registry; later shreds make some tenants unrecoverable. */
  readonly lastShredEpoch: {
    readonly id: number;
    readonly org: string;
    readonly state: string;
    readonly completedAt: string | null;
  } | null;
  readonly files: readonly BackupFile[];
}

/** Every *.db under tenants/ (relative paths), sorted. */
function tenantFiles(dataDir: string): string[] {
  const root = join(dataDir, 'tenants');
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.db')) out.push(relative(dataDir, p).split('\\').join('/'));
    }
  };
  walk(root);
  return out.sort();
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function schemaVersionOf(db: Database.Database): number {
  const r = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return r.v ?? 0;
}

/** Snapshot one live database into `to` with the online backup API. */
async function snapshot(from: string, to: string): Promise<void> {
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  // Private from the first byte (an empty file is a new database to SQLite).
  writeFileSync(to, '', { mode: 0o600, flag: 'wx' });
  const src = new Database(from, { readonly: true, fileMustExist: true });
  try {
    // All remaining pages in one step: the step reads one snapshot (WAL readers never block the
    // daemon's writers), where small steps would restart after every write of the daemon and
    // might never finish on a busy tenant.
    await src.backup(to, { progress: () => 1 << 30 });
  } finally {
    src.close();
  }
  // A standalone copy: fold any WAL the backup left into the file and leave rollback mode, so
  // the file alone is the database (its checksum then covers everything).
  const copy = new Database(to);
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}

/**
 * Back `dataDir` up into `outDir` (which must not exist or be empty) while a daemon may serve
 * from it. Returns the manifest it wrote last, durably (a backup without one is incomplete).
 */
export async function backupDataDir(o: {
  readonly dataDir: string;
  readonly outDir: string;
  readonly hsm: { readonly profile: string; readonly tokenLabel: string };
  readonly now?: () => Date;
}): Promise<BackupManifest> {
  const registry = join(o.dataDir, REGISTRY_FILE);
  if (!existsSync(registry)) throw new Error(`no ${REGISTRY_FILE} in ${o.dataDir}`);
  if (existsSync(o.outDir) && readdirSync(o.outDir).length > 0)
    throw new Error(`backup directory ${o.outDir} is not empty`);
  mkdirSync(o.outDir, { recursive: true, mode: 0o700 });
  const createdAt = (o.now ?? (() => new Date()))().toISOString();
  const paths = tenantFiles(o.dataDir);
  for (const p of paths) {
    // A tenant destroyed while the backup runs loses its file: it is simply not in the backup.
    if (!existsSync(join(o.dataDir, p))) continue;
    try {
      await snapshot(join(o.dataDir, p), join(o.outDir, p));
    } catch (err) {
      if (existsSync(join(o.dataDir, p))) throw err;
    }
  }
  await snapshot(registry, join(o.outDir, REGISTRY_FILE));
  const files: BackupFile[] = [];
  let tenantSchema = 0;
  for (const p of [...paths.filter((x) => existsSync(join(o.outDir, x))), REGISTRY_FILE]) {
    const full = join(o.outDir, p);
    const db = new Database(full, { readonly: true, fileMustExist: true });
    let v: number;
    try {
      v = schemaVersionOf(db);
    } finally {
      db.close();
    }
    if (p !== REGISTRY_FILE) tenantSchema = Math.max(tenantSchema, v);
    files.push({ path: p, bytes: statSync(full).size, sha256: sha256File(full), schemaVersion: v });
  }
  const reg = new Database(join(o.outDir, REGISTRY_FILE), { readonly: true, fileMustExist: true });
  let manifest: BackupManifest;
  try {
    const oeks = reg
      .prepare(
        "SELECT org, version, hsm_label FROM oek_versions WHERE state != 'destroyed' ORDER BY org, version",
      )
      .all() as { org: string; version: number; hsm_label: string }[];
    const epoch = reg
      .prepare('SELECT id, org, state, completed_at FROM shred_epochs ORDER BY id DESC LIMIT 1')
      .get() as { id: number; org: string; state: string; completed_at: string | null } | undefined;
    manifest = {
      format: BACKUP_FORMAT,
      createdAt,
      registrySchemaVersion: schemaVersionOf(reg),
      tenantSchemaVersion: tenantSchema,
      hsm: {
        profile: o.hsm.profile,
        tokenLabel: o.hsm.tokenLabel,
        oekLabels: oeks.map((r) => ({ org: r.org, version: r.version, label: r.hsm_label })),
      },
      lastShredEpoch: epoch
        ? { id: epoch.id, org: epoch.org, state: epoch.state, completedAt: epoch.completed_at }
        : null,
      files,
    };
  } finally {
    reg.close();
  }
  // Last, and durable with everything before it (one filesystem barrier covers the copies too).
  await writeFilesDurably([
    { path: join(o.outDir, MANIFEST_FILE), bytes: Buffer.from(JSON.stringify(manifest, null, 2) + '\n') },
  ]);
  return manifest;
}

/** Read and check a backup's manifest and every file's size and checksum; throws naming the problem. */
export function verifyBackup(backupDir: string): BackupManifest {
  const path = join(backupDir, MANIFEST_FILE);
  if (!existsSync(path)) throw new Error(`no ${MANIFEST_FILE} in ${backupDir} (incomplete backup?)`);
  const m = JSON.parse(readFileSync(path, 'utf8')) as BackupManifest;
  if (m.format !== BACKUP_FORMAT) throw new Error(`unknown backup format ${String(m.format)}`);
  if (!Array.isArray(m.files) || !m.files.some((f) => f.path === REGISTRY_FILE))
    throw new Error('the manifest lists no registry');
  for (const f of m.files) {
    if (typeof f.path !== 'string' || f.path.split('/').includes('..') || f.path.startsWith('/'))
      throw new Error(`bad path in the manifest: ${String(f.path)}`);
    const full = join(backupDir, f.path);
    if (!existsSync(full)) throw new Error(`backup file ${f.path} is missing`);
    if (statSync(full).size !== f.bytes || sha256File(full) !== f.sha256)
      throw new Error(`backup file ${f.path} does not match its checksum`);
  }
  return m;
}
