/**
 * Messages between the cluster primary and its workers (node:cluster IPC, JSON). Workers never
 * talk to each other directly: the primary relays, so it knows who is alive and who answered.
 */

/** What a cached entry depends on: an org, or one tenant of it (and maybe one customer). */
export interface CacheScope {
  readonly org: string;
  readonly tenant?: string;
  readonly customer?: string;
}

/** Worker -> primary. */
export type WorkerMessage =
  /** A write on this worker: every other worker drops what it cached about `scope`. */
  | { readonly kb: 'invalidate'; readonly scope: CacheScope; readonly policy?: boolean }
  /** A shred is about to be receipted: every other live worker must drop the keys first. */
  | { readonly kb: 'drop-request'; readonly id: number; readonly scope: CacheScope }
  /** Reply to a primary's drop. */
  | { readonly kb: 'drop-ack'; readonly id: number }
  /** Readiness, pushed every few hundred ms (the primary's /readyz reads the last one). */
  | { readonly kb: 'status'; readonly ready: boolean; readonly degraded: boolean; readonly reason?: string }
  /** The data plane is open (the primary starts the next worker only after the first one is). */
  | { readonly kb: 'opened' }
  /** Reply to a metrics request: prom-client's JSON of this worker's registry. */
  | { readonly kb: 'metrics'; readonly id: number; readonly metrics: unknown[] };

/** Primary -> worker. */
export type PrimaryMessage =
  | { readonly kb: 'invalidate'; readonly scope: CacheScope; readonly policy?: boolean }
  /** Drop the shredded keys of `scope` and answer with drop-ack `id`. */
  | { readonly kb: 'drop'; readonly id: number; readonly scope: CacheScope }
  /** Answer to a drop-request: every live worker acked (or was killed: fenced). */
  | { readonly kb: 'drop-done'; readonly id: number; readonly ok: boolean }
  /** This worker now runs the singletons (shred retries, resume at open). */
  | { readonly kb: 'leader'; readonly leader: boolean }
  | { readonly kb: 'metrics-request'; readonly id: number };

export function isKbMessage(m: unknown): m is { kb: string } {
  return typeof m === 'object' && m !== null && typeof (m as { kb?: unknown }).kb === 'string';
}
