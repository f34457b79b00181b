/**
 * Glob patterns for identities, RPCs, customers, algorithms and keys: `*` matches any run of
 * characters except "/", `**` matches anything. Everything else is literal. Compiled once, when a
 * policy is loaded, so evaluation never parses.
 */

/** A compiled pattern. */
export interface Glob {
  readonly source: string;
  test(value: string): boolean;
}

/** Compile a glob; throws on `***` or other ambiguous runs of stars. */
export function compileGlob(pattern: string): Glob {
  if (/\*{3,}/.test(pattern)) throw new Error('a pattern may use "*" or "**", not longer runs of stars');
  if (pattern === '*' || pattern === '**') return { source: pattern, test: () => true };
  if (!pattern.includes('*')) return { source: pattern, test: (v) => v === pattern };
  const re = pattern
    .split(/(\*\*|\*)/)
    .map((part) =>
      part === '**' ? '.*' : part === '*' ? '[^/]*' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('');
  const rx = new RegExp(`^${re}$`, 's');
  return { source: pattern, test: (v) => rx.test(v) };
}

/** True when some glob in `list` matches `value`. */
export function matchesAny(list: readonly Glob[], value: string): boolean {
  for (const g of list) if (g.test(value)) return true;
  return false;
}
