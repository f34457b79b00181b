/**
 * A bounded LRU of open tenant files: 100,000 tenants must not mean 100,000 open handles.
 * `evict` closes a tenant's handle before its file is deleted (an open handle keeps deleted data
 * readable), and `deleteFiles` removes the .db, -wal and -shm files.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFilesDurably } from './durable-files.ts';
import { TenantStore } from './tenant-store.ts';

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
   * Create new tenant files from complete images (tenant-file-image.ts), all durable (data and
   * directory entries) when this resolves; never overwrites; on failure removes what it wrote.
   */
  async createFilesDurably(files: readonly { fileName: string; image: Uint8Array }[]): Promise<void> {
    await writeFilesDurably(files.map((f) => ({ path: this.pathOf(f.fileName), bytes: f.image })));
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

  /**
   * Tenant files on disk (`tenants/<org>/*.db`) that no registry row names, sorted. CreateTenant(s)
   * write a file before the registry commit that acknowledges it, so a crash in between leaves
   * one: it holds a CEK wrapped under a TEK that was never stored, so nothing in it is readable.
   */
  strayFiles(known: Iterable<string>): string[] {
    const named = new Set(known);
    const dir = join(this.#root, 'tenants');
    let orgs: string[];
    try {
      orgs = readdirSync(dir);
    } catch {
      return []; // no tenant yet
    }
    const out: string[] = [];
    for (const org of orgs) {
      let files: string[];
      try {
        files = readdirSync(join(dir, org));
      } catch {
        continue; // not a directory
      }
      for (const f of files) {
        const name = `tenants/${org}/${f}`;
        if (f.endsWith('.db') && !named.has(name)) out.push(name);
      }
    }
    return out.sort();
  }

  closeAll(): void {
    for (const s of this.#open.values()) s.close();
    this.#open.clear();
  }
}
