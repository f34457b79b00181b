/**
 * Token buckets per identity and per tenant, so one noisy caller or tenant cannot starve the
 * others. A call passes only if both its buckets have a token; tokens are taken from both only
 * then. Memory is bounded: buckets live in an LRU map; evicting the least recently used bucket is
 * harmless once it has been idle for burst/rate seconds (it would be full again anyway).
 */
import { KbError } from '../errors.ts';

/** Refill rate (tokens per second) and bucket size. */
export interface BucketSpec {
  readonly ratePerSec: number;
  readonly burst: number;
}

export interface RateLimiterOptions {
  readonly perIdentity?: BucketSpec;
  readonly perTenant?: BucketSpec;
  /** Overrides by identity URI or by "org/tenant" key. */
  readonly identityOverrides?: ReadonlyMap<string, BucketSpec>;
  readonly tenantOverrides?: ReadonlyMap<string, BucketSpec>;
  /** What the identity buckets are called in refusals (default "identity"; e.g. "admin"). */
  readonly identityScope?: string;
  /** Most buckets kept (identity and tenant buckets together). */
  readonly maxBuckets?: number;
  /** Milliseconds clock; injectable for tests. */
  readonly now?: () => number;
}

/**
 * A refusal's retry hint; Infinity when the call costs more than the bucket can ever hold (a
 * batch larger than the burst), which no retry can cure.
 */
export type RateDecision =
  { readonly allow: true } | { readonly allow: false; readonly scope: string; readonly retryAfterMs: number };

/** A RATE_LIMITED KbError carrying the retry hint (the API layer sends it as `retry-after-ms`). */
export class RateLimitedError extends KbError {
  readonly retryAfterMs: number;
  constructor(scope: string, retryAfterMs: number, what = `${scope} limit`) {
    super('RATE_LIMITED', `${what}, retry after ${retryAfterMs} ms`);
    this.retryAfterMs = retryAfterMs;
  }
}

export const DEFAULT_IDENTITY_BUCKET: BucketSpec = { ratePerSec: 2_000, burst: 4_000 };
export const DEFAULT_TENANT_BUCKET: BucketSpec = { ratePerSec: 5_000, burst: 10_000 };

interface Bucket {
  tokens: number;
  last: number;
  /**
   * Tokens already promised to refused callers by their retry hints (a virtual queue): the next
   * refused caller is told to come back after those, so callers that honour the hint arrive
   * spread at the refill rate instead of all at the next token. Decays as tokens refill.
   */
  promised: number;
  readonly spec: BucketSpec;
}

/** Retry hints never promise more than this many seconds of refill ahead. */
const MAX_PROMISE_S = 10;

function checkSpec(name: string, s: BucketSpec): BucketSpec {
  if (!(s.ratePerSec > 0 && Number.isFinite(s.ratePerSec)) || !(s.burst >= 1 && Number.isFinite(s.burst))) {
    throw new KbError('INVALID_ARGUMENT', `${name}: ratePerSec must be > 0 and burst >= 1`);
  }
  return s;
}

export class RateLimiter {
  readonly #identity: BucketSpec;
  readonly #tenant: BucketSpec;
  readonly #identityOverrides: ReadonlyMap<string, BucketSpec>;
  readonly #tenantOverrides: ReadonlyMap<string, BucketSpec>;
  readonly #max: number;
  readonly #identityScope: string;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: RateLimiterOptions = {}) {
    this.#identity = checkSpec('perIdentity', opts.perIdentity ?? DEFAULT_IDENTITY_BUCKET);
    this.#tenant = checkSpec('perTenant', opts.perTenant ?? DEFAULT_TENANT_BUCKET);
    this.#identityOverrides = opts.identityOverrides ?? new Map();
    this.#tenantOverrides = opts.tenantOverrides ?? new Map();
    for (const [k, v] of this.#identityOverrides) checkSpec(`identityOverrides[${k}]`, v);
    for (const [k, v] of this.#tenantOverrides) checkSpec(`tenantOverrides[${k}]`, v);
    this.#max = opts.maxBuckets ?? 100_000;
    if (!(this.#max >= 2)) throw new KbError('INVALID_ARGUMENT', 'maxBuckets must be >= 2');
    this.#identityScope = opts.identityScope ?? 'identity';
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Number of buckets held (bounded by maxBuckets). */
  get size(): number {
    return this.#buckets.size;
  }

  #bucket(key: string, spec: BucketSpec, now: number): Bucket {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      b = { tokens: spec.burst, last: now, promised: 0, spec };
      if (this.#buckets.size >= this.#max) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
    } else {
      this.#buckets.delete(key); // re-insert below: Map order is the LRU order
      const refill = ((now - b.last) / 1000) * b.spec.ratePerSec;
      b.tokens = Math.min(b.spec.burst, b.tokens + refill);
      b.promised = Math.max(0, b.promised - refill);
      b.last = now;
    }
    this.#buckets.set(key, b);
    return b;
  }

  /** The retry hint for a refused call: after the tokens promised to earlier refused callers. */
  static #wait(b: Bucket, cost: number): number {
    if (cost > b.spec.burst) return Number.POSITIVE_INFINITY;
    const ms = Math.max(1, Math.ceil(((cost - b.tokens + b.promised) / b.spec.ratePerSec) * 1000));
    b.promised = Math.min(b.promised + cost, b.spec.ratePerSec * MAX_PROMISE_S);
    return ms;
  }

  /**
   * Take `cost` tokens for a call by `identity` on `tenantKey` ("org/tenant"; undefined for
   * org-level calls), or say how long to wait.
   */
  take(identity: string, tenantKey: string | undefined, cost = 1): RateDecision {
    const now = this.#now();
    const ib = this.#bucket(`i:${identity}`, this.#identityOverrides.get(identity) ?? this.#identity, now);
    const tb =
      tenantKey === undefined
        ? undefined
        : this.#bucket(`t:${tenantKey}`, this.#tenantOverrides.get(tenantKey) ?? this.#tenant, now);
    if (ib.tokens < cost)
      return { allow: false, scope: this.#identityScope, retryAfterMs: RateLimiter.#wait(ib, cost) };
    if (tb !== undefined && tb.tokens < cost) {
      return { allow: false, scope: 'tenant', retryAfterMs: RateLimiter.#wait(tb, cost) };
    }
    ib.tokens -= cost;
    if (tb !== undefined) tb.tokens -= cost;
    return { allow: true };
  }

  /**
   * Whether `identity`'s bucket holds a token now, and if not, how long until it does (no token
   * is taken, no retry is promised).
   */
  peek(identity: string): { readonly available: boolean; readonly retryAfterMs: number } {
    const b = this.#bucket(
      `i:${identity}`,
      this.#identityOverrides.get(identity) ?? this.#identity,
      this.#now(),
    );
    if (b.tokens >= 1) return { available: true, retryAfterMs: 0 };
    return {
      available: false,
      retryAfterMs: Math.max(1, Math.ceil(((1 - b.tokens) / b.spec.ratePerSec) * 1000)),
    };
  }

  /**
   * Like `take`, but throws RateLimitedError (RATE_LIMITED, gRPC RESOURCE_EXHAUSTED), or TOO_LARGE
   * (INVALID_ARGUMENT, not worth retrying) for a call costing more than the bucket's burst.
   */
  enforce(identity: string, tenantKey: string | undefined, cost = 1): void {
    const d = this.take(identity, tenantKey, cost);
    if (d.allow) return;
    if (d.retryAfterMs === Number.POSITIVE_INFINITY)
      throw new KbError(
        'TOO_LARGE',
        `the call costs ${cost} tokens, more than the ${d.scope} burst; split it`,
      );
    throw new RateLimitedError(d.scope, d.retryAfterMs);
  }
}
