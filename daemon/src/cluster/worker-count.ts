/** `serve --workers N|auto` and `serve.workers`: how many broker processes serve one port. */
import { availableParallelism } from 'node:os';

/** Processes to run: `auto` is the number of cores; 1 is today's single process. */
export function workerCount(v: string | number): number {
  if (v === 'auto') return Math.max(1, availableParallelism());
  const n = typeof v === 'number' ? v : /^[1-9][0-9]{0,3}$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new Error(`serve.workers: expected 'auto' or an integer in [1, 1024], got ${String(v)}`);
  return n;
}

/** The audit file of worker `id`: audit.log -> audit-w2.log (its own hash chain and lock). */
export function workerAuditPath(path: string, id: number): string {
  const m = /^(.*?)(\.[^./]*)?$/.exec(path) as RegExpExecArray;
  return `${m[1] ?? path}-w${id}${m[2] ?? ''}`;
}
