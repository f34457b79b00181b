/**
 * Refused calls (unauthenticated, malformed, invalid, denied by policy, rate-limited: anything
 * that fails before its handler runs) are cheap to send and each used to cost an fsynced audit
 * record. Each caller (identity URI, or "peer:<address>" without a usable identity) has a small
 * token bucket of refusals. While it has tokens, every refusal is recorded on its own. The refusal
 * that finds it empty is still recorded on its own, saying that a summary window opens; from then
 * until the window ends, the caller's refusals are only counted, and while its bucket is empty
 * every call it makes is refused up front (RATE_LIMITED, before validation and authorisation).
 * When the window ends one record sums them up ("N refused calls ..."). Refusals change nothing,
 * so what a crash can lose is the count of one open window; windows are also written at shutdown.
 */
import { randomUUID } from 'node:crypto';
import type { AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';
import { toKbError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import type { Logger } from '../obs/logger.ts';
import { RateLimitedError, RateLimiter, type BucketSpec } from '../policy/rate-limiter.ts';

/** Whether the gate writes the refusal's own record, and a note to add to it. */
export interface RefusalVerdict {
  readonly record: boolean;
  readonly note?: string;
}

export interface RefusalSummaryOptions {
  readonly audit: AuditSink;
  readonly log?: Logger;
  readonly bucket: BucketSpec;
  /** Length of a summary window. */
  readonly intervalMs: number;
  /** Most callers with an open window; beyond, the oldest window is written early. */
  readonly maxWindows?: number;
}

interface Window {
  readonly start: Date;
  count: number;
  readonly codes: Map<string, number>;
  readonly rpcs: Map<string, number>;
  readonly timer: NodeJS.Timeout;
}

const PEER = 'peer:';

/** "a=3, b=1" for the most frequent few entries of a count map. */
function top(m: ReadonlyMap<string, number>, n = 4): string {
  const sorted = [...m].sort((a, b) => b[1] - a[1]);
  const shown = sorted.slice(0, n).map(([k, v]) => `${k}=${v}`);
  if (sorted.length > n) shown.push(`${sorted.length - n} more`);
  return shown.join(', ');
}

export class RefusalSummary {
  readonly #o: RefusalSummaryOptions;
  readonly #bucket: RateLimiter;
  readonly #open = new Map<string, Window>();
  readonly #writes = new Set<Promise<void>>();

  constructor(o: RefusalSummaryOptions) {
    this.#o = o;
    this.#bucket = new RateLimiter({ perIdentity: o.bucket, identityScope: 'refused calls' });
  }

  /** Refuse a caller in a summary window whose refusal bucket is empty (before anything else). */
  throttle(caller: string): void {
    if (!this.#open.has(caller)) return;
    const p = this.#bucket.peek(caller);
    if (!p.available) throw new RateLimitedError('refused calls', p.retryAfterMs, 'too many refused calls');
  }

  /** Account for one refused call; says whether it gets its own record. */
  refused(caller: string, rpc: string, code: ErrorCode): RefusalVerdict {
    const took = this.#bucket.take(caller, undefined, 1).allow;
    const w = this.#open.get(caller);
    if (w !== undefined) {
      w.count++;
      w.codes.set(code, (w.codes.get(code) ?? 0) + 1);
      w.rpcs.set(rpc, (w.rpcs.get(rpc) ?? 0) + 1);
      return { record: false };
    }
    if (took) return { record: true };
    if (this.#open.size >= (this.#o.maxWindows ?? 10_000)) {
      const oldest = this.#open.keys().next();
      if (!oldest.done) this.#close(oldest.value);
    }
    const timer = setTimeout(() => this.#close(caller), this.#o.intervalMs);
    timer.unref();
    this.#open.set(caller, { start: new Date(), count: 0, codes: new Map(), rpcs: new Map(), timer });
    return {
      record: true,
      note: `too many refused calls: this caller's refusals for the next ${this.#o.intervalMs} ms are summarized in one record`,
    };
  }

  /** Write every open window now (shutdown); resolves once the records are written. */
  async flush(): Promise<void> {
    for (const caller of [...this.#open.keys()]) this.#close(caller);
    await Promise.all([...this.#writes]);
  }

  #close(caller: string): void {
    const w = this.#open.get(caller);
    if (w === undefined) return;
    this.#open.delete(caller);
    clearTimeout(w.timer);
    if (w.count === 0) return;
    const peer = caller.startsWith(PEER) ? ` from ${caller.slice(PEER.length)}` : '';
    const firstCode = [...w.codes].sort((a, b) => b[1] - a[1])[0]?.[0] as ErrorCode;
    const record: AuditRecordInput = {
      time: new Date(),
      requestId: randomUUID(),
      identity: caller.startsWith(PEER) ? 'unauthenticated' : caller,
      rpc: w.rpcs.size === 1 ? ([...w.rpcs.keys()][0] as string) : '*',
      result: 'denied',
      code: firstCode,
      reason:
        `${w.count} refused calls${peer} summarized since ${w.start.toISOString()}: ` +
        `codes ${top(w.codes)}; rpcs ${top(w.rpcs)}`,
    };
    const p = this.#o.audit.append(record).then(
      () => undefined,
      (err: unknown) => {
        this.#o.log?.error(
          { identity: record.identity, err: toKbError(err).detail ?? String(err) },
          'audit append of a refusal summary failed',
        );
      },
    );
    this.#writes.add(p);
    void p.finally(() => this.#writes.delete(p));
  }
}
