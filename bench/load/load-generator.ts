/**
 * The load generator: a separate process (pinned to its own core by the runner) that drives a
 * gRPC server closed-loop — N calls in flight over a few long-lived mTLS channels — for bounded
 * windows, and prints one JSON line per measured run (`RunLine`). It reads the server's CPU time
 * and peak RSS from /proc around each window, so CPU per request is the server's own.
 *
 * Usage: node bench/load/load-generator.ts SPEC.json
 */
import { readFileSync } from 'node:fs';
import { readCpuSeconds, readPeakRssBytes, resetPeakRss } from '../lib/proc-stats.ts';
import { latencyPercentiles } from '../lib/stats.ts';
import type { RunSample } from '../lib/result-types.ts';
import { ChannelSet } from './channel-set.ts';
import { createEchoOp } from './echo-ops.ts';
import type { LoadSpec, RunLine } from './load-spec.ts';

/** One operation the loop can call; `unitsPerCall` converts calls to the record's unit. */
export interface LoadOp {
  readonly unitsPerCall: number;
  call(channel: number, seq: number): Promise<void>;
  close(): void;
}

/** What op factories get: the connections (built here so every op uses the same client setup). */
export interface OpContext {
  readonly spec: LoadSpec;
  readonly channels: ChannelSet;
  readonly callTimeoutMs: number;
}

const specPath = process.argv[2];
if (specPath === undefined) {
  process.stderr.write('usage: load-generator.ts SPEC.json\n');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as LoadSpec;

function emit(line: object): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function createOp(ctx: OpContext): Promise<LoadOp> {
  if (spec.op.kind === 'keys') {
    const { createKeysOp } = await import('./keys-ops.ts');
    return createKeysOp(ctx, spec.op.op);
  }
  if (spec.op.kind === 'daemon') {
    // Loaded lazily: the daemon's proto only exists once the daemon lands.
    const { createDaemonOp } = await import('./daemon-ops.ts');
    return createDaemonOp(ctx, spec.op);
  }
  return createEchoOp(ctx, spec.op);
}

interface WindowResult {
  readonly latUs: Float64Array;
  readonly calls: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly seconds: number;
}

/** Closed loop: `concurrency` workers each keep one call in flight until the window closes. */
async function runWindow(
  op: LoadOp,
  set: ChannelSet,
  concurrency: number,
  channels: number,
  durationS: number,
  minCalls: number,
): Promise<WindowResult> {
  const maxCalls = spec.maxCalls;
  const lat = new Float64Array(maxCalls);
  let started = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(durationS * 1e9));
  const worker = async (w: number): Promise<void> => {
    for (;;) {
      if (started >= maxCalls) return;
      const now = process.hrtime.bigint();
      if (now >= deadline && started >= minCalls) return;
      const seq = started++;
      const s = process.hrtime.bigint();
      try {
        await op.call(w % channels, seq);
        lat[done++] = Number(process.hrtime.bigint() - s) / 1000;
        set.afterCall(w % channels);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        // A failing target must not become a hot loop of instant errors.
        if (errors > 1000 && errors > seq / 2) return;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { latUs: lat.subarray(0, done), calls: done, errors, firstError, seconds };
}

async function main(): Promise<void> {
  const maxC = Math.max(...spec.concurrencies);
  const channelCount = Math.max(1, Math.min(spec.maxChannels, maxC));
  const channels = await ChannelSet.create(spec, channelCount);
  const op = await createOp({ spec, channels, callTimeoutMs: spec.callTimeoutMs });
  try {
    for (const concurrency of spec.concurrencies) {
      const chans = Math.min(channelCount, concurrency);
      for (let run = 0; run < spec.runs; run++) {
        const warm = await runWindow(
          op,
          channels,
          concurrency,
          chans,
          spec.warmupS,
          spec.warmupCalls ?? Math.min(concurrency * 2, spec.minCalls),
        );
        if (warm.calls === 0 && warm.errors > 0)
          throw new Error(`every warm-up call failed: ${warm.firstError}`);
        const pid = spec.serverPid;
        if (pid !== undefined) resetPeakRss(pid);
        const cpu0 = process.cpuUsage();
        const srv0 = pid === undefined ? 0 : readCpuSeconds(pid);
        const w = await runWindow(op, channels, concurrency, chans, spec.durationS, spec.minCalls);
        const srv1 = pid === undefined ? 0 : readCpuSeconds(pid);
        const cpu = process.cpuUsage(cpu0);
        if (w.calls === 0) throw new Error(`every call failed: ${w.firstError}`);
        const rss = pid === undefined ? undefined : readPeakRssBytes(pid);
        const units = w.calls * op.unitsPerCall;
        const sample: RunSample = {
          throughput: units / w.seconds,
          ...latencyPercentiles(w.latUs),
          ...(pid === undefined ? {} : { serverCpuUsPerOp: ((srv1 - srv0) * 1e6) / units }),
          clientCpuUsPerOp: (cpu.user + cpu.system) / units,
          ...(rss === undefined ? {} : { peakRssBytes: rss }),
          operations: units,
          errors: w.errors,
          durationS: w.seconds,
        };
        const line: RunLine = {
          type: 'run',
          concurrency,
          run,
          sample,
          ...(w.firstError === undefined ? {} : { firstError: w.firstError }),
          ...(spec.rotation === undefined ? {} : { connections: channels.stats() }),
        };
        emit(line);
      }
    }
  } finally {
    op.close();
    channels.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    emit({ type: 'error', message: (err as Error).message });
    process.exit(1);
  },
);
