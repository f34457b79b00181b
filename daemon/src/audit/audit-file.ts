/**
 * The file operations the audit sink needs, behind a small interface so tests can inject
 * write/fsync failures around a real file.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** The file operations the sink needs; injectable so tests can fail them on purpose. */
export interface AuditFile {
  /** Append `data` at the end; may write fewer bytes (returns how many). */
  write(data: Uint8Array): Promise<number>;
  sync(): Promise<void>;
  /** True when write() returns only once its bytes are durable (O_DSYNC): no sync() after it. */
  readonly durableWrites?: boolean;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens the audit file for appending (O_APPEND). */
export type AuditFileOpener = (path: string) => Promise<AuditFile>;

/** The default opener: a real file, O_APPEND | O_DSYNC, fsync on sync(). */
export const openAuditFile: AuditFileOpener = async (path) => {
  // O_DSYNC: a write returns once its bytes and the new file size are on disk (what fdatasync
  // gives, enough for an append-only file whose directory entry was made durable at creation).
  // One system call, one thread-pool hop per batch instead of write + fsync: about a third less
  // CPU per group commit. Owner-only: the audit log names every caller and operation.
  const { O_WRONLY, O_APPEND, O_CREAT, O_DSYNC } = constants;
  const fh = await open(path, O_WRONLY | O_APPEND | O_CREAT | O_DSYNC, 0o600);
  return {
    durableWrites: true,
    write: async (data) => (await fh.write(data)).bytesWritten,
    sync: () => fh.sync(),
    truncate: (len) => fh.truncate(len),
    close: () => fh.close(),
  };
};

/** fsync a directory: a created or renamed file's name is durable only then. */
export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
