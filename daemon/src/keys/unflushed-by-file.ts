/** Usage counters (CEKs, asymmetric keys) flush one transaction per tenant file. */
import type { TenantRow } from '../store/registry-rows.ts';

/**
 * The entries of `m` with something to write, grouped by tenant file; entries with nothing
 * unflushed are dropped from `m` on the way.
 */
export function unflushedByFile<C extends { readonly t: TenantRow; unflushed: number }>(
  m: Map<string, C>,
): Map<string, C[]> {
  const byFile = new Map<string, C[]>();
  for (const [k, c] of m) {
    if (c.unflushed === 0) {
      m.delete(k);
      continue;
    }
    const l = byFile.get(c.t.fileName);
    if (l) l.push(c);
    else byFile.set(c.t.fileName, [c]);
  }
  return byFile;
}

/** Tenant files a periodic flush may open just to write counts, per tick (a bounded turn). */
export const CLOSED_FILES_PER_TICK = 32;

/**
 * The lists of `byFile` to write now: those of open files, and of up to `closedBudget` closed
 * ones (each must be opened for the write); the others keep their counts for a later tick.
 */
export function* filesThisTick<C>(
  byFile: ReadonlyMap<string, C[]>,
  isOpen: (fileName: string) => boolean,
  closedBudget: number,
): Generator<C[]> {
  let left = closedBudget;
  for (const [fileName, list] of byFile) {
    if (!isOpen(fileName)) {
      if (left <= 0) continue;
      left -= 1;
    }
    yield list;
  }
}
