/**
 * Timing loops for in-process ceilings (crypto, raw PKCS#11): a sync tight loop, or N async
 * workers. Each returns a RunSample whose CPU is this process's own (there is no server).
 */
import type { RunSample } from './result-types.ts';
import { latencyPercentiles } from './stats.ts';

export interface LoopBounds {
  readonly durationS: number;
  readonly minOps: number;
  readonly maxOps: number;
  /** Work units per call (bytes→MiB for streams, items for batches). */
  readonly unitsPerCall?: number;
}

function sample(lat: Float64Array, calls: number, seconds: number, cpuUs: number, units: number): RunSample {
  const ops = calls * units;
  return {
    throughput: ops / seconds,
    ...latencyPercentiles(lat.subarray(0, calls)),
    clientCpuUsPerOp: cpuUs / ops,
    operations: ops,
    errors: 0,
    durationS: seconds,
  };
}

/** Call `fn` back to back until the bounds say stop. Throws whatever `fn` throws. */
export function measureSync(fn: (i: number) => void, b: LoopBounds): RunSample {
  const lat = new Float64Array(b.maxOps);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(b.durationS * 1e9));
  let n = 0;
  for (; n < b.maxOps; n++) {
    const s = process.hrtime.bigint();
    if (s >= deadline && n >= b.minOps) break;
    fn(n);
    lat[n] = Number(process.hrtime.bigint() - s) / 1000;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return sample(lat, n, seconds, cpu.user + cpu.system, b.unitsPerCall ?? 1);
}

/** `concurrency` async workers, each awaiting `fn` back to back. */
export async function measureAsync(
  fn: (worker: number, i: number) => Promise<void>,
  concurrency: number,
  b: LoopBounds,
): Promise<RunSample> {
  const lat = new Float64Array(b.maxOps);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(b.durationS * 1e9));
  let started = 0;
  let done = 0;
  const worker = async (w: number): Promise<void> => {
    for (;;) {
      if (started >= b.maxOps) return;
      const s = process.hrtime.bigint();
      if (s >= deadline && started >= b.minOps) return;
      const i = started++;
      await fn(w, i);
      lat[done++] = Number(process.hrtime.bigint() - s) / 1000;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return sample(lat, done, seconds, cpu.user + cpu.system, b.unitsPerCall ?? 1);
}
