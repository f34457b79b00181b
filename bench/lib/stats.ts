/**
 * Small, pure statistics for the harness: percentiles of latency samples and the median and
 * spread of a metric over repeated runs.
 */
import type { RunSample, Spread } from './result-types.ts';

/** Percentile by linear interpolation between closest ranks; `sorted` must be ascending. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (p <= 0) return sorted[0] as number;
  if (p >= 100) return sorted[sorted.length - 1] as number;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** Median, min, max and quartiles of a set of per-run values (NaN entries are ignored). */
export function spreadOf(values: readonly number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0)
    return { median: Number.NaN, min: Number.NaN, max: Number.NaN, q1: Number.NaN, q3: Number.NaN, n: 0 };
  const min = v[0] as number;
  const max = v[v.length - 1] as number;
  const quartiles = v.length >= 4;
  return {
    median: percentile(v, 50),
    min,
    max,
    q1: quartiles ? percentile(v, 25) : min,
    q3: quartiles ? percentile(v, 75) : max,
    n: v.length,
  };
}

/** Relative spread (max-min)/median, 0 for a single run; the noise estimate compare uses. */
export function relativeSpread(s: Spread): number {
  if (s.n < 2 || !(s.median > 0)) return 0;
  return (s.max - s.min) / s.median;
}

/** Latency percentiles (µs) of one run from its raw samples; sorts a copy. */
export function latencyPercentiles(samplesUs: Float64Array): { p50Us: number; p90Us: number; p99Us: number } {
  const sorted = Float64Array.from(samplesUs).sort();
  return { p50Us: percentile(sorted, 50), p90Us: percentile(sorted, 90), p99Us: percentile(sorted, 99) };
}

/** The per-metric spreads of a record from its runs. */
export function summarizeRuns(runs: readonly RunSample[]): {
  throughput: Spread;
  p50Us: Spread;
  p90Us: Spread;
  p99Us: Spread;
  clientCpuUsPerOp: Spread;
  serverCpuUsPerOp?: Spread;
  peakRssBytes?: Spread;
} {
  const pick = (f: (r: RunSample) => number | undefined): number[] =>
    runs.map(f).filter((x): x is number => x !== undefined);
  const server = pick((r) => r.serverCpuUsPerOp);
  const rss = pick((r) => r.peakRssBytes);
  return {
    throughput: spreadOf(pick((r) => r.throughput)),
    p50Us: spreadOf(pick((r) => r.p50Us)),
    p90Us: spreadOf(pick((r) => r.p90Us)),
    p99Us: spreadOf(pick((r) => r.p99Us)),
    clientCpuUsPerOp: spreadOf(pick((r) => r.clientCpuUsPerOp)),
    ...(server.length > 0 ? { serverCpuUsPerOp: spreadOf(server) } : {}),
    ...(rss.length > 0 ? { peakRssBytes: spreadOf(rss) } : {}),
  };
}
