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
