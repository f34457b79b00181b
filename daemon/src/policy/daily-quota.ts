/**
 * Operations-per-day quotas per tenant (UTC days, fixed window). In memory: a restart forgives the
 * current day, which is acceptable for a quota meant against runaway clients, not for billing.
 */
import { KbError } from '../errors.ts';
import { RateLimitedError } from './rate-limiter.ts';

export interface DailyQuotaOptions {
  /** Default operations per UTC day per key; overrides by key. */
  readonly opsPerDay: number;
  readonly overrides?: ReadonlyMap<string, number>;
  /** Epoch milliseconds; injectable for tests. */
  readonly now?: () => number;
  readonly maxKeys?: number;
}

const DAY_MS = 86_400_000;

export class DailyQuota {
  readonly #opts: DailyQuotaOptions;
  readonly #now: () => number;
  readonly #used = new Map<string, { day: number; count: number }>();

  constructor(opts: DailyQuotaOptions) {
    if (!(opts.opsPerDay >= 1)) throw new KbError('INVALID_ARGUMENT', 'opsPerDay must be >= 1');
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Count `cost` operations for `key`, or throw RATE_LIMITED with the time until the next UTC day
   * as its retry hint (sent as the `retry-after-ms` trailer).
   */
  consume(key: string, cost = 1): void {
    const now = this.#now();
    const day = Math.floor(now / DAY_MS);
    let u = this.#used.get(key);
    if (u === undefined || u.day !== day) {
      u = { day, count: 0 };
      if (this.#used.size >= (this.#opts.maxKeys ?? 1_000_000)) {
        const oldest = this.#used.keys().next();
        if (!oldest.done) this.#used.delete(oldest.value);
      }
      this.#used.set(key, u);
    }
    const limit = this.#opts.overrides?.get(key) ?? this.#opts.opsPerDay;
    if (u.count + cost > limit) {
      const retry = (day + 1) * DAY_MS - now;
      throw new RateLimitedError('daily quota', retry, `daily quota of ${limit} operations used`);
    }
    u.count += cost;
  }

  /** Operations counted today for `key`. */
  used(key: string): number {
    const u = this.#used.get(key);
    return u !== undefined && u.day === Math.floor(this.#now() / DAY_MS) ? u.count : 0;
  }
}
