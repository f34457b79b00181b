/**
 * The load generator: a separate process (pinned to its own core by the runner) that drives a
 * gRPC server closed-loop — N calls in flight over a few long-lived mTLS channels — for bounded
 * windows, and prints one JSON line per measured run (`RunLine`). It reads the server's CPU time
 * and peak RSS from /proc around each window, so CPU per request is the server's own.
 * With `alternate`, it also drives a second server (a ceiling) in the same windows: each run is
 * cut into slices that take turns, A B A B ..., and each side gets its own run line.
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
  const o = ctx.spec.op;
  if (o.kind === 'keys') {
    const { createKeysOp } = await import('./keys-ops.ts');
    return createKeysOp(ctx, o.op);
  }
  if (o.kind === 'blind-index') {
    const { createBlindIndexOp } = await import('./blind-index-ops.ts');
    return createBlindIndexOp(ctx, o.values);
  }
  if (o.kind === 'daemon') {
    // Loaded lazily: the daemon's proto only exists once the daemon lands.
    const { createDaemonOp } = await import('./daemon-ops.ts');
    return createDaemonOp(ctx, o);
  }
  return createEchoOp(ctx, o);
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

/** One server driven by this process: its calls, its connections, its process. */
interface Side {
  readonly spec: LoadSpec;
  readonly op: LoadOp;
  readonly set: ChannelSet;
  /** Printed on this side's run lines (the alternate ceiling's); unset for the spec's own. */
  readonly scenario?: string;
}

/** What one run of one side adds up to over its slices. */
interface Tally {
  readonly lat: Float64Array[];
  calls: number;
  errors: number;
  firstError: string | undefined;
  seconds: number;
  serverS: number;
  clientUs: number;
}

async function openSide(s: LoadSpec, channelCount: number, scenario?: string): Promise<Side> {
  const set = await ChannelSet.create(s, channelCount);
  const op = await createOp({ spec: s, channels: set, callTimeoutMs: s.callTimeoutMs });
  return { spec: s, op, set, ...(scenario === undefined ? {} : { scenario }) };
}

/** The run line of one side: throughput and CPU per unit over all its slices. */
function runLine(side: Side, t: Tally, concurrency: number, run: number): RunLine {
  if (t.calls === 0) throw new Error(`every call failed: ${t.firstError}`);
  const pid = side.spec.serverPid;
  const rss = pid === undefined ? undefined : readPeakRssBytes(pid);
  const units = t.calls * side.op.unitsPerCall;
  const lat = new Float64Array(t.lat.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of t.lat) {
    lat.set(a, o);
    o += a.length;
  }
  const sample: RunSample = {
    throughput: units / t.seconds,
    ...latencyPercentiles(lat),
    ...(pid === undefined ? {} : { serverCpuUsPerOp: (t.serverS * 1e6) / units }),
    clientCpuUsPerOp: t.clientUs / units,
    ...(rss === undefined ? {} : { peakRssBytes: rss }),
    operations: units,
    errors: t.errors,
    durationS: t.seconds,
  };
  return {
    type: 'run',
    ...(side.scenario === undefined ? {} : { scenario: side.scenario }),
    concurrency,
    run,
    sample,
    ...(t.firstError === undefined ? {} : { firstError: t.firstError }),
    ...(side.spec.rotation === undefined ? {} : { connections: side.set.stats() }),
  };
}

async function main(): Promise<void> {
  const maxC = Math.max(...spec.concurrencies);
  const channelCount = Math.max(1, Math.min(spec.maxChannels, maxC));
  const sides: Side[] = [await openSide(spec, channelCount)];
  const alt = spec.alternate;
  if (alt !== undefined) {
    const { rotation: _rotation, alternate: _alternate, serverPid: _pid, ...rest } = spec;
    const altSpec: LoadSpec = {
      ...rest,
      target: alt.target,
      tls: alt.tls,
      op: alt.op,
      ...(alt.serverPid === undefined ? {} : { serverPid: alt.serverPid }),
    };
    sides.push(await openSide(altSpec, channelCount, alt.scenario));
  }
  const slices = alt === undefined ? 1 : Math.max(1, Math.min(alt.slices ?? 4, 20));
  try {
    for (const concurrency of spec.concurrencies) {
      const chans = Math.min(channelCount, concurrency);
      for (let run = 0; run < spec.runs; run++) {
        for (const side of sides) {
          const warm = await runWindow(
            side.op,
            side.set,
            concurrency,
            chans,
            spec.warmupS,
            spec.warmupCalls ?? Math.min(concurrency * 2, spec.minCalls),
          );
          if (warm.calls === 0 && warm.errors > 0)
            throw new Error(`every warm-up call failed: ${warm.firstError}`);
          if (side.spec.serverPid !== undefined) resetPeakRss(side.spec.serverPid);
        }
        const tallies: Tally[] = sides.map(() => ({
          lat: [],
          calls: 0,
          errors: 0,
          firstError: undefined,
          seconds: 0,
          serverS: 0,
          clientUs: 0,
        }));
        // A B A B ...: each side's window is cut in `slices`, so both sample the same seconds.
        for (let k = 0; k < slices; k++) {
          for (const [i, side] of sides.entries()) {
            const t = tallies[i] as Tally;
            const pid = side.spec.serverPid;
            const cpu0 = process.cpuUsage();
            const srv0 = pid === undefined ? 0 : readCpuSeconds(pid);
            const w = await runWindow(
              side.op,
              side.set,
              concurrency,
              chans,
              spec.durationS / slices,
              Math.ceil(spec.minCalls / slices),
            );
            const srv1 = pid === undefined ? 0 : readCpuSeconds(pid);
            const cpu = process.cpuUsage(cpu0);
            t.lat.push(w.latUs.slice()); // a copy: the window's buffer is sized for maxCalls
            t.calls += w.calls;
            t.errors += w.errors;
            t.firstError ??= w.firstError;
            t.seconds += w.seconds;
            t.serverS += srv1 - srv0;
            t.clientUs += cpu.user + cpu.system;
          }
        }
        for (const [i, side] of sides.entries()) emit(runLine(side, tallies[i] as Tally, concurrency, run));
      }
    }
  } finally {
    for (const side of sides) {
      side.op.close();
      side.set.close();
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    emit({ type: 'error', message: (err as Error).message });
    process.exit(1);
  },
);
