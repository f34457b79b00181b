/**
 * One process at a time across the workers of a data dir, for the steps that must not run
 * twice at once (shreds, shred epochs, OEK rotation): their in-memory "in progress" marks only
 * cover one process. A lock file holds the holder's pid; a holder that died (SIGKILL) leaves a
 * stale file that the next taker removes. Waiters poll: these steps are rare and short.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { KbError } from '../errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryTake(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: number;
  try {
    holder = Number.parseInt(readFileSync(path, 'utf8'), 10);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // released meanwhile
    throw err;
  }
  // A file still being written reads empty (NaN): treat as held, look again shortly.
  if (!Number.isInteger(holder) || (holder > 0 && alive(holder))) return false;
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return false;
}

export class DataDirLock {
  readonly #path: string;
  readonly #waitMs: number;
  /** Callers of this process queue here first, so the file is only raced between processes. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(path: string, waitMs = 120_000) {
    this.#path = path;
    this.#waitMs = waitMs;
  }

  /** Run `fn` holding the lock (waits for another process's holder, up to waitMs). */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(
      () => this.#locked(fn),
      () => this.#locked(fn),
    );
    this.#tail = next.catch(() => undefined);
    return next;
  }

  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.#waitMs;
    while (!tryTake(this.#path)) {
      if (Date.now() > until)
        throw new KbError('HSM_UNAVAILABLE', 'another broker process holds the shred lock', {
          detail: this.#path,
        });
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      return await fn();
    } finally {
      release(this.#path);
    }
  }
}

/** Remove the lock file (already gone is fine: nothing else may remove a live holder's file). */
function release(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
