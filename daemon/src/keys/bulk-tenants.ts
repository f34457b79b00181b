/**
 * Bulk tenant creation (Admin.CreateTenants): many tenants with one durability barrier per batch
 * instead of a SQLite file creation and two registry fsyncs each. Still "acknowledged only once
 * durable": every tenant file is written and fsynced, then its directory, then ONE registry
 * transaction commits every row, all before the call returns.
 */
import { randomBytes } from 'node:crypto';
import { KbError } from '../errors.ts';
import type { OrgId, TenantId } from '../ids.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';
import type { TekRow, TenantRow } from '../store/registry-store.ts';
import { StaleOekError } from '../store/registry-store.ts';
import { TenantFileImages } from '../store/tenant-file-image.ts';
import { deriveTek, wrapCek } from '../wire/wrapped-key-v1.ts';
import type { Hierarchy } from './hierarchy.ts';
import type { KeyPolicy, TenantCreateResult } from './key-broker-api.ts';
import { defaultPolicy, mergePolicy, tenantInfo } from './key-info.ts';

/** Most names one CreateTenants call may carry (bounds its memory, HSM time and transaction). */
export const MAX_TENANTS_PER_BATCH = 1000;
/** StaleOekError retries (an OEK rotation committed while the batch was being wrapped). */
const STALE_OEK_RETRIES = 5;

interface Prepared {
  readonly tenant: TenantRow;
  readonly tek: TekRow;
  readonly image: Uint8Array;
}

/**
 * Create `tenants` (distinct, validated names) in `org`. A name that already exists (or existed:
 * destroyed names stay taken) is reported per item as ALREADY_EXISTS; every other name is created,
 * and all of them are durable when this resolves. Anything else (HSM, disk) fails the whole call
 * and creates none of them: files written for the batch are removed, no registry row is committed.
 */
export async function createTenantsBulk(
  h: Hierarchy,
  rotationPeriodS: number,
  org: OrgId,
  tenants: readonly TenantId[],
  policy: Partial<KeyPolicy> | undefined,
): Promise<TenantCreateResult[]> {
  if (tenants.length === 0 || tenants.length > MAX_TENANTS_PER_BATCH)
    throw new KbError('INVALID_ARGUMENT', `1 to ${MAX_TENANTS_PER_BATCH} tenant names per call`);
  if (new Set(tenants).size !== tenants.length)
    throw new KbError('INVALID_ARGUMENT', 'a tenant name appears more than once');
  const o = h.orgRow(org);
  if (!o) throw new KbError('NOT_FOUND', 'org');
  if (!o.enabled) throw new KbError('DISABLED', 'org');
  const p = mergePolicy(defaultPolicy(rotationPeriodS), policy, 1);
  const reg = h.d.registry;
  const taken = new Set<string>(tenants.filter((t) => reg.getTenant(org, t) !== undefined));
  const fresh = tenants.filter((t) => !taken.has(t));
  let created = new Map<string, Prepared>();
  for (let attempt = 0; fresh.length > 0; attempt++) {
    const batch = await prepare(h, org, fresh, p);
    const files = batch.map((b) => ({ fileName: b.tenant.fileName, image: b.image }));
    // Files first (a file without a registry row is never referenced), the rows last: the
    // registry commit is the acknowledgement, as for CreateTenant.
    await h.d.pool.createFilesDurably(files);
    let skipped: Set<string>;
    try {
      skipped = reg.insertTenants(batch.map((b) => ({ tenant: b.tenant, tek: b.tek })));
    } catch (err) {
      for (const f of files) h.d.pool.deleteFiles(f.fileName);
      if (err instanceof StaleOekError && attempt < STALE_OEK_RETRIES) continue;
      throw err;
    }
    // Names a concurrent CreateTenant committed meanwhile: theirs stands, our files go.
    for (const b of batch) {
      if (skipped.has(b.tenant.tenant)) {
        h.d.pool.deleteFiles(b.tenant.fileName);
        taken.add(b.tenant.tenant);
      } else {
        h.forgetTenant(org, b.tenant.tenant);
      }
    }
    created = new Map(batch.filter((b) => !skipped.has(b.tenant.tenant)).map((b) => [b.tenant.tenant, b]));
    break;
  }
  return tenants.map((t): TenantCreateResult => {
    const b = created.get(t);
    return b
      ? { tenant: t, ok: true, info: tenantInfo(b.tenant, [b.tek]) }
      : { tenant: t, ok: false, error: new KbError('ALREADY_EXISTS', 'tenant') };
  });
}

/** A fresh TEK for one tenant, wrapped in the HSM; `raw` is zeroed by whoever consumes it. */
interface PendingWrap {
  readonly raw: Uint8Array;
  readonly wrap: Promise<{ wrapped: Uint8Array; oekVersion: number }>;
}

function startWrap(h: Hierarchy, org: OrgId): PendingWrap {
  const raw = randomBytes(32);
  const wrap = h.wrapTekRaw(org, raw);
  // Awaited by the loop below, or settled in its finally: never an unhandled rejection.
  wrap.catch(() => undefined);
  return { raw, wrap };
}

/**
 * Wrap a fresh TEK per tenant under the primary OEK and build each tenant file's bytes. One wrap
 * runs ahead: the HSM call for tenant i+1 proceeds (libuv pool) while this thread derives the TEK,
 * wraps the CEK and builds the file image of tenant i.
 */
async function prepare(
  h: Hierarchy,
  org: OrgId,
  tenants: readonly TenantId[],
  p: ReturnType<typeof defaultPolicy>,
): Promise<Prepared[]> {
  const out: Prepared[] = [];
  const now = h.d.now().toISOString();
  const cp = { ...defaultPolicy(p.rotationPeriodS), usageLimit: 0 };
  // Every tenant's first rows are alike but for the wrapped CEK: one template image per batch.
  const images = new TenantFileImages(
    { customer: DEFAULT_CUSTOMER, enabled: true, state: 'active', createdAt: now, primaryCek: 1, ...cp },
    { customer: DEFAULT_CUSTOMER, version: 1, tekVersion: 1, state: 'enabled', createdAt: now, uses: 0 },
  );
  let next: PendingWrap | undefined = tenants.length > 0 ? startWrap(h, org) : undefined;
  try {
    for (const [i, tenant] of tenants.entries()) {
      const cur = next as PendingWrap;
      next = undefined;
      const cek = randomBytes(32);
      try {
        const { wrapped, oekVersion } = await cur.wrap;
        if (i + 1 < tenants.length) next = startWrap(h, org);
        const tek = deriveTek(cur.raw, org, tenant, 1);
        const cid = { org, tenant, customer: DEFAULT_CUSTOMER, cekVersion: 1, tekVersion: 1 };
        const wrappedCek = wrapCek(tek, cid, cek);
        tek.fill(0);
        const image = images.image(wrappedCek);
        const fileName = `tenants/${org}/${tenant}.${randomBytes(4).toString('hex')}.db`;
        out.push({
          tenant: {
            org,
            tenant,
            enabled: true,
            state: 'active',
            createdAt: now,
            primaryTek: 1,
            fileName,
            ...p,
          },
          tek: { org, tenant, version: 1, oekVersion, wrapped, state: 'enabled', createdAt: now, uses: 1 },
          image,
        });
      } finally {
        cur.raw.fill(0);
        cek.fill(0);
      }
    }
  } finally {
    // A failure left one wrap in flight: let it finish before zeroing the key it reads.
    if (next) {
      const left: PendingWrap = next;
      await left.wrap.catch(() => undefined);
      left.raw.fill(0);
    }
  }
  return out;
}
