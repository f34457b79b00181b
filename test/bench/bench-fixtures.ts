/** Synthetic bench records and result files for the harness's unit tests (no processes run). */
import { buildRecord, type RecordMeta } from '../../bench/lib/aggregate.ts';
import {
  RESULTS_SCHEMA,
  type ResultsFile,
  type RunSample,
  type ScenarioRecord,
} from '../../bench/lib/result-types.ts';

/** A run with `throughput` and latency/CPU consistent with it (scaled by `slow`). */
export function sample(
  throughput: number,
  opts: { slow?: number; serverCpu?: number; errors?: number } = {},
): RunSample {
  const slow = opts.slow ?? 1;
  return {
    throughput,
    p50Us: 200 * slow,
    p90Us: 300 * slow,
    p99Us: 900 * slow,
    serverCpuUsPerOp: (opts.serverCpu ?? 100) * slow,
    clientCpuUsPerOp: 150,
    peakRssBytes: 100 * 1024 * 1024,
    operations: Math.round(throughput * 2),
    errors: opts.errors ?? 0,
    durationS: 2,
  };
}

export function meta(name: string, kind: RecordMeta['kind'], extra: Partial<RecordMeta> = {}): RecordMeta {
  return {
    name,
    kind,
    group: '1 KiB',
    description: `${name} (synthetic)`,
    unit: kind === 'ceiling-in-process' ? 'ops/s' : 'req/s',
    payloadBytes: 1024,
    phase: 'test',
    ...extra,
  };
}

/** A record whose runs have the given throughputs (all other metrics scaled by `slow`). */
export function record(
  m: RecordMeta,
  concurrency: number,
  throughputs: readonly number[],
  slow = 1,
): ScenarioRecord {
  return buildRecord(
    m,
    concurrency,
    throughputs.map((t) => sample(t, { slow })),
  );
}

/** A complete results file around `records`. */
export function resultsFile(records: readonly ScenarioRecord[]): ResultsFile {
  return {
    schema: RESULTS_SCHEMA,
    mode: 'quick',
    startedAt: '2026-11-22T06:00:00.000Z',
    finishedAt: '2026-11-22T06:01:00.000Z',
    durationS: 60,
    git: { revision: '0123456789abcdef0123456789abcdef01234567', dirty: false },
    machine: {
      cpuModel: 'Test CPU',
      cores: 2,
      memoryBytes: 24 * 2 ** 30,
      kernel: '6.0',
      node: 'v24.21.0',
      openssl: '3.5.8',
      platform: 'linux-x64',
      pinned: true,
    },
    loadAverage: { atStart: 0.5, atEnd: 0.7 },
    tls: { echo: 'TLSv1.3 TLS_AES_256_GCM_SHA384 X25519MLKEM768' },
    records,
    targets: [],
    delegated: [],
    missing: [],
  };
}
