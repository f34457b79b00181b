/**
 * The file operations the audit sink needs, behind a small interface so tests can inject
 * write/fsync failures around a real file.
 */
import { open } from 'node:fs/promises';

/** The file operations the sink needs; injectable so tests can fail them on purpose. */
export interface AuditFile {
  /** Append `data` at the end; may write fewer bytes (returns how many). */
  write(data: Uint8Array): Promise<number>;
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens the audit file for appending (O_APPEND). */
export type AuditFileOpener = (path: string) => Promise<AuditFile>;

/** The default opener: a real file, O_APPEND, fsync on sync(). */
export const openAuditFile: AuditFileOpener = async (path) => {
  // Owner-only: the audit log names every caller and operation.
  const fh = await open(path, 'a', 0o600);
  return {
    write: async (data) => (await fh.write(data)).bytesWritten,
    sync: () => fh.sync(),
    truncate: (len) => fh.truncate(len),
    close: () => fh.close(),
  };
};
