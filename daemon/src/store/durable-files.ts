/**
 * Many new files made durable with one barrier: write them all (page cache only), then one
 * syncfs(2) per filesystem (`sync -f`, coreutils) flushes their data, inodes and directory entries
 * in a single journal commit. fsync per file costs a commit each (the libuv pool runs 4 at a
 * time): ~0.4-2 ms per file against ~0.1-0.6 ms with the barrier on this machine's disk.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { childEnv } from '../util/child-env.ts';

/** Files written at once (each write only copies into the page cache). */
const WRITE_PARALLELISM = 16;
/** coreutils `sync`; absent, the fallback fsyncs every file and directory. */
const SYNC_BINARY = 'sync';
let syncfsMissing = false;

/** syncfs(2) on the filesystem holding `path`; false when `sync` is not installed. */
function syncfs(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile(SYNC_BINARY, ['-f', path], { timeout: 120_000, env: childEnv() }, (err, _out, stderr) => {
      if (!err) return resolve(true);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(false);
      reject(new Error(`sync -f failed: ${stderr.trim().slice(0, 200) || err.message}`));
    });
  });
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Run `fn` over `items` with `n` in flight; stops starting new ones after the first failure. */
async function bounded<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const x = items[next++] as T;
      try {
        await fn(x);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  // Settle every worker before returning, so nothing still runs when the caller cleans up.
  const settled = await Promise.allSettled(Array.from({ length: Math.min(n, items.length) }, worker));
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

/**
 * Create every file (mode 0600, never overwriting: O_EXCL) with its bytes, and make all of them
 * durable before resolving, directory entries included (any directory it had to create as well).
 * On any failure the files it created are removed and the error rethrown.
 */
export async function writeFilesDurably(
  files: readonly { path: string; bytes: Uint8Array }[],
): Promise<void> {
  const dirs = new Set<string>();
  for (const f of files) {
    const dir = dirname(f.path);
    if (dirs.has(dir)) continue;
    dirs.add(dir);
    // mkdirSync returns the first directory it created: its parents' entries need syncing too.
    const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (created !== undefined)
      for (let d = dir; d.length >= created.length; d = dirname(d)) dirs.add(dirname(d));
  }
  const written: string[] = [];
  try {
    await bounded(files, WRITE_PARALLELISM, async (f) => {
      const fh = await open(f.path, 'wx', 0o600);
      written.push(f.path);
      try {
        await fh.writeFile(f.bytes);
        if (syncfsMissing) await fh.sync();
      } finally {
        await fh.close();
      }
    });
    if (!syncfsMissing) {
      // One barrier per directory's filesystem (normally one: every tenant dir is under dataDir).
      for (const d of dirs) {
        if (await syncfs(d)) continue;
        syncfsMissing = true;
        await bounded(written, WRITE_PARALLELISM, fsyncPath);
        break;
      }
    }
    if (syncfsMissing) for (const d of dirs) await fsyncPath(d);
  } catch (err) {
    for (const path of written) rmSync(path, { force: true });
    throw err;
  }
}
