/**
 * Durable policy text on disk: a policy changed over the API must survive a restart and must be
 * what the next SIGHUP re-reads, so it is written where the daemon loads its policy from.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Write `text` to `path` atomically (temp file, fsync, rename, fsync of the directory). */
export function writePolicyFileDurably(path: string, text: string): void {
  const tmp = join(dirname(path), `.${process.pid}.policy.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Write `org`'s policy section as `<dir>/<org>.json`, durably (org names are safe file names). */
export function writeOrgPolicyFile(dir: string, org: string, text: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writePolicyFileDurably(join(dir, `${org}.json`), text);
}
