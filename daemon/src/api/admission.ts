/**
 * Admission control, as configured under `rateLimit` and `limits`. The call gate asks in this order:
 *  1. `throttle` (first, before any validation or authorisation): a caller whose budget of refused
 *     calls is spent is refused at once (see refusal-summary.ts);
 *  2. `beforeAuthorization`: the caller's own bucket, per identity — data-plane calls (Crypto,
 *     BlindIndexes, Secrets, the data operations of Keys) from one bucket, control-plane calls (Admin, Approvals, Policy, key
 *     management) from a separate admin bucket;
 *  3. `afterAuthorization`: for allowed data-plane calls only, the tenant's bucket and daily quota.
 *     Admin calls never spend a tenant's budget, so a tenant that hammers its limit or used its
 *     quota cannot lock its own admins out.
 * Refusals are RATE_LIMITED (RESOURCE_EXHAUSTED with a retry-after-ms trailer), or TOO_LARGE for a
 * call costing more than a bucket's burst (no retry can help it).
 */
import type { AuditSink } from '../audit/audit-sink.ts';
import type { Config } from '../config/config-schema.ts';
import { KbError } from '../errors.ts';
import type { Logger } from '../obs/logger.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import { DailyQuota } from '../policy/daily-quota.ts';
import { RateLimitedError, RateLimiter, type BucketSpec } from '../policy/rate-limiter.ts';
import type { CallTarget } from './call-gate.ts';
import { RefusalSummary, type RefusalVerdict } from './refusal-summary.ts';

/** Keys RPCs that use keys (data plane); the others manage them (control plane). */
const KEYS_DATA_OPS: ReadonlySet<string> = new Set([
  'GetPublicKey',
  'GetJwks',
  'Sign',
  'SignBatch',
  'Verify',
  'VerifyBatch',
  'Encapsulate',
  'EncapsulateBatch',
  'Decapsulate',
  'DecapsulateBatch',
  'SealBox',
  'OpenBox',
]);

/** Services whose every RPC is a tenant service's data-plane call. */
const DATA_SERVICES = [
  'keybroker.v1.Crypto/',
  'keybroker.v1.BlindIndexes/',
  'keybroker.v1.Secrets/',
] as const;

/** Whether an RPC ("keybroker.v1.Service/Method") is a data-plane call, charged to its tenant. */
export function isDataPlane(rpc: string): boolean {
  if (DATA_SERVICES.some((s) => rpc.startsWith(s))) return true;
  return rpc.startsWith('keybroker.v1.Keys/') && KEYS_DATA_OPS.has(rpc.slice('keybroker.v1.Keys/'.length));
}

/** How long a caller refused for too many open streams is asked to wait. */
const STREAM_RETRY_MS = 1000;

export class Admission {
  readonly #data: RateLimiter | undefined;
  readonly #admin: RateLimiter | undefined;
  readonly #tenants: RateLimiter | undefined;
  readonly #quota: DailyQuota | undefined;
  readonly #refusalSpec: { bucket: BucketSpec; intervalMs: number } | undefined;
  #refusals: RefusalSummary | undefined;
  readonly #maxStreams: number;
  readonly #streams = new Map<string, number>();

  constructor(cfg: Config, audit?: AuditSink, log?: Logger) {
    const r = cfg.rateLimit;
    if (r.enabled) {
      this.#data = new RateLimiter({
        perIdentity: { ratePerSec: r.perIdentityPerSec, burst: r.perIdentityBurst },
      });
      this.#admin = new RateLimiter({
        perIdentity: { ratePerSec: r.adminPerSec, burst: r.adminBurst },
        identityScope: 'admin',
      });
      this.#tenants = new RateLimiter({
        perIdentity: { ratePerSec: r.perTenantPerSec, burst: r.perTenantBurst },
        identityScope: 'tenant',
      });
      this.#refusalSpec = {
        bucket: { ratePerSec: r.refusedPerSec, burst: r.refusedBurst },
        intervalMs: r.refusalSummaryMs,
      };
    }
    this.#quota = r.tenantOpsPerDay > 0 ? new DailyQuota({ opsPerDay: r.tenantOpsPerDay }) : undefined;
    this.#maxStreams = cfg.limits.maxStreamsPerIdentity;
    if (audit !== undefined) this.attach(audit, log);
  }

  /** Where refusal summaries go (the call gate's audit sink); without one, every refusal is recorded. */
  attach(audit: AuditSink, log?: Logger): void {
    if (this.#refusals !== undefined || this.#refusalSpec === undefined) return;
    this.#refusals = new RefusalSummary({
      audit,
      ...(log !== undefined ? { log } : {}),
      ...this.#refusalSpec,
    });
  }

  /** Refuse a caller ("identity URI" or "peer:<address>") whose refused-calls budget is spent. */
  throttle(caller: string): void {
    this.#refusals?.throttle(caller);
  }

  /** The caller's own bucket (data plane or admin), before authorisation. */
  beforeAuthorization(identity: CallerIdentity, rpc: string, cost: number): void {
    (isDataPlane(rpc) ? this.#data : this.#admin)?.enforce(identity.uri, undefined, cost);
  }

  /** The tenant's bucket and daily quota, for allowed data-plane calls. */
  afterAuthorization(rpc: string, target: CallTarget, cost: number): void {
    if (target.tenant === undefined || !isDataPlane(rpc)) return;
    const tenantKey = `${target.org ?? ''}/${target.tenant}`;
    this.#tenants?.enforce(tenantKey, undefined, cost);
    this.#quota?.consume(tenantKey, cost);
  }

  /** A call refused before its handler ran: audit it on its own, or count it into a summary. */
  refused(caller: string, rpc: string, err: KbError): RefusalVerdict {
    return this.#refusals?.refused(caller, rpc, err.code) ?? { record: true };
  }

  /** Take one of the identity's open-stream slots; the returned function gives it back. */
  openStream(identity: CallerIdentity): () => void {
    const n = this.#streams.get(identity.uri) ?? 0;
    if (n >= this.#maxStreams)
      throw new RateLimitedError('streams', STREAM_RETRY_MS, `${this.#maxStreams} open streams per identity`);
    this.#streams.set(identity.uri, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#streams.get(identity.uri) ?? 1) - 1;
      if (left <= 0) this.#streams.delete(identity.uri);
      else this.#streams.set(identity.uri, left);
    };
  }

  /** Write the open refusal summaries (at shutdown). */
  flush(): Promise<void> {
    return this.#refusals?.flush() ?? Promise.resolve();
  }
}

/** Admission control from the config; refusal summaries go to `audit` (else the call gate's sink). */
export function admission(cfg: Config, audit?: AuditSink, log?: Logger): Admission {
  return new Admission(cfg, audit, log);
}
