/**
 * `keybroker serve` with or without workers: one process (serve.workers = 1, the default) runs
 * the daemon itself; with N > 1 this process becomes the cluster primary and forks N workers,
 * each of which runs the daemon (main.ts) with its broker id.
 */
import cluster from 'node:cluster';
import { ConfigError, loadConfig } from '../config/load-config.ts';
import { unservedStoreBackend } from '../config/store-backend.ts';
import { runDaemon } from '../main.ts';
import type { DaemonOptions } from '../main.ts';
import { createLoggers } from '../obs/logger.ts';
import { runClusterPrimary } from './cluster-primary.ts';
import { workerCount } from './worker-count.ts';

export async function runServe(o: DaemonOptions): Promise<number> {
  const env = o.env ?? process.env;
  if (cluster.isWorker) return runDaemon(o);
  const cfg = loadConfig(o.configPath, env);
  let n: number;
  try {
    n = workerCount(cfg.serve.workers);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (n === 1) return runDaemon(o);
  const unserved = unservedStoreBackend(cfg);
  if (unserved !== undefined) throw new ConfigError(unserved);
  const loggers = createLoggers(cfg.log.level);
  loggers.log.info({ workers: n }, 'cluster: starting workers');
  return runClusterPrimary({ cfg, workers: n, log: loggers.log, flush: () => loggers.flush() });
}
