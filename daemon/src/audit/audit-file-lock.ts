/**
 * One writer per audit file: two sinks appending to the same file would fork the chain. A lock
 * file next to the audit file holds the writer's pid and PID namespace; a lock left by a dead
 * process (kill -9, power loss) is taken over, a live one refuses the open. A pid from another
 * PID namespace (two containers sharing the volume) cannot be checked from here, so that lock is
 * never taken over: an operator removes it once no daemon runs there.
 */
import { openSync, closeSync, readFileSync, readlinkSync, unlinkSync, writeSync } from 'node:fs';
import { KbError } from '../errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** This process's PID namespace ("pid:[inode]" on Linux; "" where there is none to read). */
function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    // Not Linux (or no /proc): locks hold no namespace and pids are compared as before.
    return '';
  }
}

/** Take the lock for `auditPath`; returns the release function. */
export function lockAuditFile(auditPath: string): () => void {
  const lockPath = `${auditPath}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      try {
        writeSync(fd, `${process.pid}\n${pidNamespace()}\n`);
      } finally {
        closeSync(fd);
      }
      return () => {
        try {
          unlinkSync(lockPath);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: number;
    let ns: string;
    try {
      const [pid = '', space = ''] = readFileSync(lockPath, 'utf8').split('\n');
      holder = Number.parseInt(pid, 10);
      ns = space;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
      throw err;
    }
    if (ns !== '' && ns !== pidNamespace()) {
      throw new KbError(
        'FAILED_PRECONDITION',
        `audit file is locked by process ${holder} of another PID namespace (${ns}); remove ${lockPath} only if no daemon runs there`,
      );
    }
    if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
      throw new KbError('FAILED_PRECONDITION', `audit file is in use by process ${holder}`);
    }
    // Stale: its writer is gone. Remove and retry the exclusive create.
    try {
      unlinkSync(lockPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new KbError('FAILED_PRECONDITION', 'could not take the audit file lock');
}
