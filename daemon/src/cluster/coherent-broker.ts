/**
 * The broker as the API sees it on a worker of `serve --workers N`: every call that writes keys,
 * versions, policies or enablement is followed (success or failure: a failed call may have
 * written part) by an invalidation of its org or tenant on every other worker. Reads and the
 * data plane pass through untouched.
 */
import type { CacheScope } from './cluster-messages.ts';

/** Method names that write (the broker's and those of its asymmetric/index/secret parts). */
const WRITES = /^(create|rotate|set|define|delete|undelete|destroy|put|disable|enable|update|import)/;
/** Parts of the broker with their own writing methods, wrapped the same way. */
const PARTS = new Set(['asymmetric', 'blindIndexes', 'secrets']);

/** The org/tenant/customer a call names: its first argument (an org id, or a tenant ref). */
function scopeOf(args: readonly unknown[]): CacheScope | undefined {
  const [a, b] = args;
  if (typeof a === 'string') return { org: a };
  if (typeof a === 'object' && a !== null) {
    const r = a as { org?: unknown; tenant?: unknown; customer?: unknown };
    if (typeof r.org !== 'string') return undefined;
    if (typeof r.tenant !== 'string') return { org: r.org };
    const customer = typeof r.customer === 'string' ? r.customer : typeof b === 'string' ? b : undefined;
    return { org: r.org, tenant: r.tenant, ...(customer !== undefined ? { customer } : {}) };
  }
  return undefined;
}

/**
 * Wrap `target` so that writes call `changed(scope)` once they settle; `undefined` scope (no org
 * named, e.g. the rotation scan of every org) means "everything".
 */
export function coherentBroker<T extends object>(
  target: T,
  changed: (scope: CacheScope | undefined) => void,
): T {
  const parts = new Map<string, object>();
  return new Proxy(target, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof prop !== 'string') return v;
      if (PARTS.has(prop) && typeof v === 'object' && v !== null) {
        let p = parts.get(prop);
        if (p === undefined) parts.set(prop, (p = coherentBroker(v, changed)));
        return p;
      }
      if (typeof v !== 'function') return v;
      const fn = v as (...a: unknown[]) => unknown;
      if (!WRITES.test(prop)) return fn.bind(t);
      return (...args: unknown[]) => {
        const out = fn.apply(t, args);
        const scope = scopeOf(args);
        if (out instanceof Promise)
          return out.finally(() => {
            changed(scope);
          });
        changed(scope);
        return out;
      };
    },
  });
}
