/**
 * Restore of an online backup (store/online-backup.ts) into an empty data dir, with the HSM
 * token the backup names. Every file's checksum is checked first; then, in the restored
 * registry, each org's root-key (OEK) versions are looked up in the token: a tenant whose TEKs
 * are wrapped only under OEK versions the token no longer holds was shredded after the backup
 * (a shred epoch destroys the org's old OEK versions) and can never be decrypted again. Such
 * tenants are marked destroyed (never served) and their files removed; the report names them.
 * Every other tenant opens as it was.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Hsm } from '../hsm/hsm.ts';
import { writeFilesDurably } from '../store/durable-files.ts';
import { REGISTRY_FILE, verifyBackup } from '../store/online-backup.ts';
import type { BackupManifest } from '../store/online-backup.ts';

export interface RestoreReport {
  readonly manifest: BackupManifest;
  /** Tenants restored and readable (their TEKs unwrap under OEK versions still in the token). */
  readonly restored: readonly string[];
  /** "org/tenant" of tenants shredded after the backup: marked destroyed, not served. */
  readonly unrecoverable: readonly string[];
  /** Orgs whose primary OEK version is gone from the token: disabled (no new tenant can be made). */
  readonly disabledOrgs: readonly string[];
}

/**
 * Restore `backupDir` into `dataDir` (no registry there yet). `tokenLabel`, when given, must be
 * the one the backup names: the keys of a backup live only in that token.
 */
export async function restoreBackup(o: {
  readonly backupDir: string;
  readonly dataDir: string;
  readonly hsm: Hsm;
  readonly tokenLabel?: string;
}): Promise<RestoreReport> {
  const manifest = verifyBackup(o.backupDir);
  if (o.tokenLabel !== undefined && o.tokenLabel !== manifest.hsm.tokenLabel)
    throw new Error(`the backup's keys are in HSM token "${manifest.hsm.tokenLabel}", not "${o.tokenLabel}"`);
  if (existsSync(join(o.dataDir, REGISTRY_FILE)))
    throw new Error(`${o.dataDir} already holds a registry: restore into an empty data dir`);
  if (existsSync(join(o.dataDir, 'tenants')) && readdirSync(join(o.dataDir, 'tenants')).length > 0)
    throw new Error(`${o.dataDir} already holds tenant files: restore into an empty data dir`);
  // Private (0600), never over an existing file, and durable before the registry is touched;
  // in groups, so memory stays bounded with many tenant files.
  for (let i = 0; i < manifest.files.length; i += 256)
    await writeFilesDurably(
      manifest.files.slice(i, i + 256).map((f) => ({
        path: join(o.dataDir, f.path),
        bytes: readFileSync(join(o.backupDir, f.path)),
      })),
    );
  const db = new Database(join(o.dataDir, REGISTRY_FILE), { fileMustExist: true });
  try {
    const oeks = db
      .prepare("SELECT org, version, hsm_label FROM oek_versions WHERE state != 'destroyed'")
      .all() as {
      org: string;
      version: number;
      hsm_label: string;
    }[];
    const present = new Set<string>();
    for (const k of oeks)
      if ((await o.hsm.findKey(k.hsm_label, 'root')) !== undefined) present.add(`${k.org}/${k.version}`);
    const now = new Date().toISOString();
    const restored: string[] = [];
    const unrecoverable: string[] = [];
    const disabledOrgs: string[] = [];
    const tenants = db
      .prepare("SELECT org, tenant, file_name FROM tenants WHERE state = 'active' ORDER BY org, tenant")
      .all() as {
      org: string;
      tenant: string;
      file_name: string;
    }[];
    const teks = db.prepare('SELECT oek_version FROM tek_versions WHERE org = ? AND tenant = ?');
    db.transaction(() => {
      for (const k of oeks)
        if (!present.has(`${k.org}/${k.version}`))
          db.prepare(
            "UPDATE oek_versions SET state = 'destroyed', destroyed_at = ? WHERE org = ? AND version = ?",
          ).run(now, k.org, k.version);
      for (const t of tenants) {
        const rows = teks.all(t.org, t.tenant) as { oek_version: number }[];
        if (rows.some((r) => present.has(`${t.org}/${r.oek_version}`))) {
          restored.push(`${t.org}/${t.tenant}`);
          continue;
        }
        unrecoverable.push(`${t.org}/${t.tenant}`);
        // As a destroy leaves it: a tombstone without keys; its file is unreadable, so it goes.
        db.prepare("UPDATE tenants SET state = 'destroyed', enabled = 0 WHERE org = ? AND tenant = ?").run(
          t.org,
          t.tenant,
        );
        db.prepare('DELETE FROM tek_versions WHERE org = ? AND tenant = ?').run(t.org, t.tenant);
      }
      const orgs = db.prepare('SELECT org, primary_oek FROM orgs').all() as {
        org: string;
        primary_oek: number;
      }[];
      for (const g of orgs)
        if (!present.has(`${g.org}/${g.primary_oek}`)) {
          disabledOrgs.push(g.org);
          db.prepare('UPDATE orgs SET enabled = 0 WHERE org = ?').run(g.org);
        }
    })();
    for (const t of tenants)
      if (unrecoverable.includes(`${t.org}/${t.tenant}`))
        for (const suffix of ['', '-wal', '-shm'])
          rmSync(join(o.dataDir, t.file_name + suffix), { force: true });
    return { manifest, restored, unrecoverable, disabledOrgs };
  } finally {
    db.close();
  }
}
