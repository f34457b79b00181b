/**
 * Daemon start for tenant asymmetric keys: instantiate the configured post-quantum engines, run
 * the power-on self-test of every algorithm on every engine (the FIPS 140-3 habit) and refuse to
 * continue if any check fails, then the router and the worker pool (whose workers self-test too).
 */
import { availableParallelism } from 'node:os';
import { LiboqsEngine } from '../pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../pqc/openssl-engine.ts';
import type { EngineName, PqcEngine } from '../pqc/pqc-engine.ts';
import { PqcRouter, type PqcOperation, type PqcRoutingConfig } from '../pqc/pqc-router.ts';
import { PqcWorkerPool } from '../pqc/pqc-worker-pool.ts';
import {
  assertSelfTestPassed,
  loadSelfTestKats,
  runSelfTest,
  type SelfTestKats,
  type SelfTestReport,
} from '../pqc/self-test.ts';
import { AsymmetricRuntime } from './asymmetric-key-material.ts';

export interface AsymmetricStartOptions {
  readonly engines: readonly EngineName[];
  readonly routes: Readonly<Record<PqcOperation, EngineName>>;
  readonly offload: readonly PqcOperation[];
  /** 0: one worker per core; no pool when nothing is offloaded. */
  readonly workers: number;
  /**
   * Test builds only (the daemon passes it when KB_TEST_HOOKS=1): corrupt the known answers of
   * this algorithm so the self-test must fail. Proves the refusal path end to end.
   */
  readonly corruptKat?: string;
}

/** Flip one nibble of a hex string (a known answer that can no longer match). */
const flipHex = (h: string): string => (h[0] === '0' ? '1' : '0') + h.slice(1);

/** The shipped KATs, with one algorithm's answers corrupted when a test asks for it. */
export function selfTestKats(corrupt?: string): SelfTestKats {
  const k = loadSelfTestKats();
  if (corrupt === undefined || corrupt === '') return k;
  return {
    ...k,
    mlKem: k.mlKem.map((x) => (x.alg === corrupt ? { ...x, K: flipHex(x.K) } : x)),
    mlDsa: k.mlDsa.map((x) => (x.alg === corrupt ? { ...x, sig: flipHex(x.sig) } : x)),
    xWing: corrupt === 'x-wing' ? { ...k.xWing, ss: flipHex(k.xWing.ss) } : k.xWing,
  };
}

/** Engines, self-test, router, pool. Throws FAILED_PRECONDITION naming every failed check. */
export async function startAsymmetricRuntime(
  o: AsymmetricStartOptions,
): Promise<{ runtime: AsymmetricRuntime; report: SelfTestReport }> {
  const engines: PqcEngine[] = [];
  for (const name of o.engines)
    engines.push(name === 'openssl' ? new OpenSslEngine() : await LiboqsEngine.create());
  const report = await runSelfTest(engines, selfTestKats(o.corruptKat));
  assertSelfTestPassed(report);
  const config: PqcRoutingConfig = { enabled: o.engines, routes: o.routes, offload: o.offload };
  const router = new PqcRouter(engines, config);
  const pool =
    o.offload.length > 0
      ? await PqcWorkerPool.create({ size: o.workers === 0 ? availableParallelism() : o.workers })
      : undefined;
  return { runtime: new AsymmetricRuntime(router, pool), report };
}
