/**
 * The last step before a shred's receipt is signed (review M1): no copy of the shredded keys may
 * remain in the process. Evict the caches again (a cold load that started before the shred is
 * already refused by the cache's shred generation; this catches anything else), abort the open
 * streams of the tenant or customer, and wait until the PQC workers have dropped their copies.
 */
import { orgId, tenantId } from '../ids.ts';
import type { ShredRow } from '../store/registry-store.ts';
import type { AsymmetricKeys } from './asymmetric-keys.ts';
import type { Hierarchy } from './hierarchy.ts';
import { tenantKey } from './hierarchy.ts';
import type { LiveStreams } from './live-streams.ts';

export async function purgeShredded(
  h: Hierarchy,
  streams: LiveStreams,
  asym: AsymmetricKeys | undefined,
  s: ShredRow,
): Promise<void> {
  await purgeScope(
    h,
    streams,
    asym,
    s.org,
    s.tenant,
    s.kind === 'tenant' ? undefined : (s.customer as string),
  );
}

/** The same for a tenant, or one customer of it (also what another process's shred asks of this one). */
export async function purgeScope(
  h: Hierarchy,
  streams: LiveStreams,
  asym: AsymmetricKeys | undefined,
  org: string,
  tenant: string,
  customer: string | undefined,
): Promise<void> {
  const ref = { org: orgId(org), tenant: tenantId(tenant) };
  const k = tenantKey(org, tenant);
  if (customer === undefined) {
    h.evictTenant(org, tenant);
    streams.abort(k);
    await asym?.purgeShredded(ref);
    return;
  }
  const t = h.tenantRow(org, tenant);
  if (t) h.evictCustomer(t, customer);
  // Every TEK of the tenant: the old versions wrapped the customer's CEKs (the current one
  // reloads on its next use).
  h.evictTeks(org, tenant);
  streams.abort(k, customer);
  await asym?.purgeShredded(ref, customer);
}
