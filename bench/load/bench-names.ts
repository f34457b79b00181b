/** Names of the tenants and customers the bench provisions; the runner and the load agree on them. */

/** Tenant i of a many-tenant phase. */
export function benchTenant(i: number): string {
  return `t${String(i).padStart(6, '0')}`;
}

/** Customer i of the cold/warm cache population. */
export function benchCustomer(i: number): string {
  return `c${String(i).padStart(6, '0')}`;
}

/** The blind index the daemon phase defines for the blind-index scenarios. */
export const BENCH_BLIND_INDEX = 'bench-email';
