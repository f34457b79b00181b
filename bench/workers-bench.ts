/**
 * `serve --workers N` against the real daemon (gRPC + mTLS, audit on, SoftHSM2): aggregate
 * Crypto.Encrypt and Crypto.Decrypt of 1 KiB for 1 and 2 workers (default: 1..cores), with the
 * server's CPU per request (primary + workers, from /proc) and the load generators' share of the
 * machine. Load comes from child processes (one per core), each with connections of its own
 * (spread over the workers by the cluster's round-robin accept). Rate limits are off: this
 * measures throughput, not the limiter. Prints a table; writes results.json and summary.md.
 *
 *   node bench/workers-bench.ts [--workers 1,2] [--duration-ms 8000] [--out bench/results/workers]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import { connectKeybroker } from '../daemon/src/api/api-client.ts';
import { httpText, initDaemonDir, startDaemon } from './daemon/daemon-process.ts';
import { CORES, NODE } from './lib/child-process.ts';
import { readCpuSeconds } from './lib/proc-stats.ts';

const REPO = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    workers: { type: 'string', default: `1,${Math.max(2, availableParallelism())}` },
    'duration-ms': { type: 'string', default: '8000' },
    out: { type: 'string', default: join(REPO, 'bench/results/workers') },
    // Audit off: what the workers do without each call's audit fsync (the audit's own cost apart).
    unaudited: { type: 'boolean', default: false },
    // Child mode: be one load generator.
    gen: { type: 'string' },
  },
});
const DURATION = Math.min(Math.max(Number(args['duration-ms']), 2000), 60_000);
const CONNECTIONS_PER_GEN = 4;
const IN_FLIGHT_PER_CONNECTION = 8;
const plaintext = Buffer.alloc(1024, 0x61);
const aad = Buffer.from('bench');

type Client = ReturnType<typeof connectKeybroker>;

/** Child: run `rpc` on own connections until time is up; report calls and own CPU seconds. */
async function generator(spec: string): Promise<void> {
  const { address, dataDir, rpc, ms } = JSON.parse(spec) as {
    address: string;
    dataDir: string;
    rpc: string;
    ms: number;
  };
  const pki = (f: string) => readFileSync(join(dataDir, 'pki', f));
  const clients: Client[] = Array.from({ length: CONNECTIONS_PER_GEN }, () =>
    connectKeybroker({
      address,
      caPem: pki('ca.pem'),
      certPem: pki('service.pem'),
      keyPem: pki('service-key.pem'),
      channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
    }),
  );
  const ct = (await clients[0]?.crypto.unary<{ ciphertext: Buffer }>('Encrypt', { plaintext, aad }))
    ?.ciphertext;
  for (const c of clients) await c.crypto.unary('Encrypt', { plaintext, aad }); // connect and warm
  let ok = 0;
  let errors = 0;
  let firstError = '';
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = Date.now() + ms;
  const loop = async (c: Client) => {
    while (Date.now() < end) {
      try {
        if (rpc === 'encrypt') await c.crypto.unary('Encrypt', { plaintext, aad }, { deadlineMs: 10_000 });
        else await c.crypto.unary('Decrypt', { ciphertext: ct, aad }, { deadlineMs: 10_000 });
        ok++;
      } catch (err) {
        errors++;
        firstError ||= (err as ServiceError).details ?? String(err);
      }
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: IN_FLIGHT_PER_CONNECTION }, () => loop(c))));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  for (const c of clients) c.close();
  process.stdout.write(
    JSON.stringify({ ok, errors, firstError, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n',
  );
}

interface GenResult {
  ok: number;
  errors: number;
  firstError: string;
  seconds: number;
  cpuSeconds: number;
}

function runGenerator(spec: object): Promise<GenResult> {
  return new Promise((res, rej) => {
    const p = spawn(NODE, [import.meta.filename, '--gen', JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) return rej(new Error(`generator exited ${code}: ${out}`));
      res(JSON.parse(last) as GenResult);
    });
  });
}

interface Row {
  workers: number;
  rpc: string;
  callsPerSec: number;
  errors: number;
  serverCpuUsPerCall: number;
  serverCores: number;
  generatorCores: number;
  seconds: number;
}

/** The pids of the daemon: the primary and every worker (from /healthz), or the one process. */
async function serverPids(metricsPort: number, primary: number): Promise<number[]> {
  const h = JSON.parse(await httpText(metricsPort, '/healthz')) as { brokers?: { pid: number }[] };
  return [primary, ...(h.brokers ?? []).map((b) => b.pid)];
}

async function measure(n: number): Promise<Row[]> {
  const base = mkdtempSync(join(tmpdir(), 'kb-bench-workers-'));
  const dir = await initDaemonDir(REPO, join(base, 'data'), 'bench', 'bench');
  const d = await startDaemon(REPO, dir, {
    core: CORES.all,
    env: {
      KB_SERVE_WORKERS: String(n),
      KB_RATE_LIMIT_ENABLED: 'false',
      KB_LOG_LEVEL: 'warn',
      ...(args.unaudited ? { KB_AUDIT_ENABLED: 'false' } : {}),
    },
    readyTimeoutMs: 180_000,
  });
  try {
    // /readyz is 200 once one worker is; wait for all of them.
    for (let i = 0; i < 600; i++) {
      const r = JSON.parse(await httpText(d.metricsPort, '/readyz')) as { brokers?: { ready: boolean }[] };
      if ((r.brokers ?? []).every((b) => b.ready)) break;
      await new Promise((x) => setTimeout(x, 100));
    }
    const pids = await serverPids(d.metricsPort, d.pid);
    const gens = Math.max(1, availableParallelism());
    const rows: Row[] = [];
    for (const rpc of ['encrypt', 'decrypt']) {
      const spec = { address: `127.0.0.1:${d.grpcPort}`, dataDir: dir.dataDir, rpc, ms: DURATION };
      const cpu0 = pids.map(readCpuSeconds).reduce((a, b) => a + b, 0);
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: gens }, () => runGenerator(spec)));
      const wall = (performance.now() - t0) / 1000;
      const cpu = pids.map(readCpuSeconds).reduce((a, b) => a + b, 0) - cpu0;
      const ok = results.reduce((a, r) => a + r.ok, 0);
      const seconds = Math.max(...results.map((r) => r.seconds));
      const errors = results.reduce((a, r) => a + r.errors, 0);
      if (errors > 0)
        process.stderr.write(
          `${rpc} ×${n}: ${errors} errors, first: ${results.find((r) => r.firstError)?.firstError}\n`,
        );
      rows.push({
        workers: n,
        rpc,
        callsPerSec: ok / seconds,
        errors,
        serverCpuUsPerCall: (cpu / Math.max(1, ok)) * 1e6,
        serverCores: cpu / wall,
        generatorCores: results.reduce((a, r) => a + r.cpuSeconds, 0) / wall,
        seconds,
      });
    }
    return rows;
  } finally {
    await d.stop(10_000);
    rmSync(base, { recursive: true, force: true });
  }
}

function summary(rows: Row[], meta: Record<string, unknown>): string {
  const one = (rpc: string) => rows.find((r) => r.workers === 1 && r.rpc === rpc)?.callsPerSec ?? NaN;
  const lines = [
    '# serve --workers: Encrypt/Decrypt 1 KiB',
    '',
    `Run ${String(meta.time)} at git ${String(meta.git)} on ${String(meta.cpus)} × ${String(meta.cpuModel)} (load average before: ${String(meta.loadavg)}).`,
    `Load: ${String(meta.generators)} generator processes × ${CONNECTIONS_PER_GEN} connections × ${IN_FLIGHT_PER_CONNECTION} calls in flight, ${DURATION / 1000} s per row, rate limits off, audit ${meta.unaudited === true ? 'off' : 'on'}. The generators run on the same cores as the daemon: their share is the "generator cores" column.`,
    '',
    '| workers | RPC | calls/s | vs 1 worker | server CPU µs/call | server cores | generator cores | errors |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.workers} | ${r.rpc} | ${r.callsPerSec.toFixed(0)} | ${(r.callsPerSec / one(r.rpc)).toFixed(2)}× | ${r.serverCpuUsPerCall.toFixed(0)} | ${r.serverCores.toFixed(2)} | ${r.generatorCores.toFixed(2)} | ${r.errors} |`,
    ),
    '',
    ...rows
      .filter((r) => r.serverCores < 0.5 * r.workers)
      .slice(0, 1)
      .map(
        () =>
          'The server used well under one core per worker: it was not CPU-bound here (a busy machine, and with the audit on the fsync of each call, set the pace), so "vs 1 worker" measures parallel audit chains and scheduler share, not the ceiling of N cores.\n',
      ),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  if (args.gen !== undefined) return generator(args.gen);
  const counts = (args.workers ?? '1,2').split(',').map((s) => Number(s.trim()));
  const rows: Row[] = [];
  const meta = {
    time: new Date().toISOString(),
    git: gitHead(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    loadavg: loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    generators: Math.max(1, availableParallelism()),
    durationMs: DURATION,
    unaudited: args.unaudited === true,
  };
  for (const n of counts) {
    const r = await measure(n);
    rows.push(...r);
    for (const x of r)
      process.stdout.write(
        `workers=${x.workers} ${x.rpc}: ${x.callsPerSec.toFixed(0)}/s, server ${x.serverCpuUsPerCall.toFixed(0)} µs CPU/call on ${x.serverCores.toFixed(2)} cores, generators ${x.generatorCores.toFixed(2)} cores, errors ${x.errors}\n`,
      );
  }
  const out = resolve(args.out ?? 'bench/results/workers');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify({ meta, rows }, null, 2) + '\n');
  writeFileSync(join(out, 'summary.md'), summary(rows, meta));
  process.stdout.write(`wrote ${out}/results.json and summary.md\n`);
}

function gitHead(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '?';
}

await main();
