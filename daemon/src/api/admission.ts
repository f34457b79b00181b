/**
 * Admission control after authorisation: token buckets per identity and per tenant, and a
 * per-tenant daily quota, as configured under `rateLimit`. Refusals are RATE_LIMITED
 * (RESOURCE_EXHAUSTED with a retry-after-ms trailer).
 */
import type { Config } from '../config/config-schema.ts';
import { DailyQuota } from '../policy/daily-quota.ts';
import { RateLimiter } from '../policy/rate-limiter.ts';
import type { CallGateOptions } from './call-gate.ts';

/** Rate limits per identity and tenant, and the per-tenant daily quota, from the config. */
export function admission(cfg: Config): CallGateOptions['admit'] {
  const r = cfg.rateLimit;
  const limiter = r.enabled
    ? new RateLimiter({
        perIdentity: { ratePerSec: r.perIdentityPerSec, burst: r.perIdentityBurst },
        perTenant: { ratePerSec: r.perTenantPerSec, burst: r.perTenantBurst },
      })
    : undefined;
  const quota = r.tenantOpsPerDay > 0 ? new DailyQuota({ opsPerDay: r.tenantOpsPerDay }) : undefined;
  if (limiter === undefined && quota === undefined) return undefined;
  return (identity, target, cost) => {
    const tenantKey = target.tenant === undefined ? undefined : `${target.org ?? ''}/${target.tenant}`;
    limiter?.enforce(identity.uri, tenantKey, cost);
    if (quota !== undefined && tenantKey !== undefined) quota.consume(tenantKey, cost);
  };
}
