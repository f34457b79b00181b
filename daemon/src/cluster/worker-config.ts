/**
 * The config one worker of `serve --workers N` runs with: its own audit chain, its share of the
 * per-tenant and per-identity limits, and no listener of its own for /metrics (the primary
 * serves /metrics, /healthz and /readyz for all of them, labelled by broker id).
 */
import type { Config } from '../config/config-schema.ts';
import { workerAuditPath } from './worker-count.ts';

/** This process's place in a cluster (from the environment the primary gave it). */
export interface WorkerIdentity {
  readonly id: number;
  readonly workers: number;
}

/** KB_WORKER_ID / KB_WORKER_COUNT, set by the primary for each forked worker. */
export function workerIdentity(env: NodeJS.ProcessEnv): WorkerIdentity | undefined {
  const id = Number(env.KB_WORKER_ID);
  const workers = Number(env.KB_WORKER_COUNT);
  if (!Number.isInteger(id) || id < 1 || !Number.isInteger(workers) || workers < 1) return undefined;
  return { id, workers };
}

/** The broker id in trailers, metrics labels and readiness: w1, w2, ... */
export function brokerId(w: WorkerIdentity): string {
  return `w${w.id}`;
}

/**
 * Each worker enforces 1/N of every rate and quota (rounded up): connections are spread
 * round-robin, so a tenant's calls reach each worker about equally and the deployment admits at
 * most N * ceil(limit / N); a client whose calls all land on one worker gets only 1/N.
 */
export function workerConfig(cfg: Config, w: WorkerIdentity | undefined): Config {
  if (w === undefined) return cfg;
  const share = (n: number) => Math.max(1, Math.ceil(n / w.workers));
  const r = cfg.rateLimit;
  return {
    ...cfg,
    audit: { ...cfg.audit, path: workerAuditPath(cfg.audit.path, w.id) },
    metrics: { ...cfg.metrics, enabled: false },
    lifecycle: { ...cfg.lifecycle, readyFile: '' },
    rateLimit: {
      ...r,
      perIdentityPerSec: share(r.perIdentityPerSec),
      perIdentityBurst: share(r.perIdentityBurst),
      perTenantPerSec: share(r.perTenantPerSec),
      perTenantBurst: share(r.perTenantBurst),
      tenantOpsPerDay: r.tenantOpsPerDay === 0 ? 0 : share(r.tenantOpsPerDay),
      adminPerSec: share(r.adminPerSec),
      adminBurst: share(r.adminBurst),
    },
  };
}
