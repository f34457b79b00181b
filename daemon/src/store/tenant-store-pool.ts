/**
 * A bounded LRU of open tenant files: 100,000 tenants must not mean 100,000 open handles.
 * `evict` closes a tenant's handle before its file is deleted (an open handle keeps deleted data
 * readable), and `deleteFiles` removes the .db, -wal and -shm files.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TenantStore } from './tenant-store.ts';

/** New tenant files written at once by `createFilesDurably` (the fsyncs overlap in the kernel). */
const WRITE_PARALLELISM = 16;

/** fsync a directory so the entries created in it survive a crash. */
async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class TenantStorePool {
  readonly #root: string;
  readonly #max: number;
  readonly #open = new Map<string, TenantStore>();

  constructor(dataDir: string, maxOpen: number) {
    this.#root = dataDir;
    this.#max = Math.max(1, maxOpen);
  }

  get openCount(): number {
    return this.#open.size;
  }

  /** Whether a tenant's file is open now (writing to it then costs no open/close). */
  isOpen(fileName: string): boolean {
    return this.#open.has(fileName);
  }

  pathOf(fileName: string): string {
    return join(this.#root, fileName);
  }

  /** The store for a tenant's file, opening it (and closing the least recently used) as needed. */
  get(fileName: string, create = false): TenantStore {
    const hit = this.#open.get(fileName);
    if (hit) {
      this.#open.delete(fileName);
      this.#open.set(fileName, hit);
      return hit;
    }
    const path = this.pathOf(fileName);
    if (create) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const store = TenantStore.open(path, create);
    this.#open.set(fileName, store);
    while (this.#open.size > this.#max) {
      const [oldest, s] = this.#open.entries().next().value as [string, TenantStore];
      this.#open.delete(oldest);
      s.close();
    }
    return store;
  }

  /**
   * Create new tenant files from complete images (tenant-file-image.ts), durable when this
   * resolves: every file written and fsynced (several at a time, so the kernel merges their
   * journal commits), then every directory they are in (and any it had to create) fsynced once.
   * Never overwrites a file; on any failure the files it wrote are removed and the error rethrown.
   */
  async createFilesDurably(files: readonly { fileName: string; image: Uint8Array }[]): Promise<void> {
    const dirs = new Set<string>();
    for (const f of files) {
      const dir = dirname(this.pathOf(f.fileName));
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      // mkdirSync returns the first directory it created: its parents need their entries synced too.
      const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (created !== undefined) {
        for (let d = dir; d.length >= created.length; d = dirname(d)) dirs.add(dirname(d));
      }
    }
    const written: string[] = [];
    try {
      let next = 0;
      let failed = false;
      const worker = async (): Promise<void> => {
        while (!failed && next < files.length) {
          const f = files[next++] as { fileName: string; image: Uint8Array };
          try {
            await this.#writeSynced(this.pathOf(f.fileName), f.image, written);
          } catch (err) {
            failed = true;
            throw err;
          }
        }
      };
      // Settle every worker before cleaning up, so none writes a file after the cleanup ran.
      const n = Math.min(WRITE_PARALLELISM, files.length);
      const settled = await Promise.allSettled(Array.from({ length: n }, worker));
      const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
      for (const d of dirs) await syncDir(d);
    } catch (err) {
      for (const path of written) rmSync(path, { force: true });
      throw err;
    }
  }

  async #writeSynced(path: string, image: Uint8Array, written: string[]): Promise<void> {
    const fh = await open(path, 'wx', 0o600);
    written.push(path);
    try {
      await fh.writeFile(image);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  evict(fileName: string): void {
    const s = this.#open.get(fileName);
    this.#open.delete(fileName);
    s?.close();
  }

  /** Close the handle, then delete the file and its WAL and shared-memory files. */
  deleteFiles(fileName: string): void {
    this.evict(fileName);
    const path = this.pathOf(fileName);
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true });
  }

  closeAll(): void {
    for (const s of this.#open.values()) s.close();
    this.#open.clear();
  }
}
