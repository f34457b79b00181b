/**
 * Noisy neighbour, in-process: a server handles requests FIFO on the event loop (one macrotask
 * each, ~200 µs of real hashing work per allowed request). A quiet tenant sends one request at a
 * time; a noisy tenant keeps 64 in flight and retries a refused request at once (ignoring the
 * retry hint: the worst client). Three phases in the same run:
 *   quiet alone (the unloaded latency), quiet + noisy without limits, quiet + noisy with the
 *   per-tenant token buckets of RateLimiter (noisy limited to 500/s, burst 50).
 * Target: with limits, the quiet tenant's p50 latency stays within 2x its unloaded p50, while the
 * noisy tenant gets RATE_LIMITED (RESOURCE_EXHAUSTED). The daemon-level version comes later.
 *
 *   node bench/rate-limit-bench.ts [--duration-ms 2000] [--json]
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { RateLimiter } from '../daemon/src/policy/rate-limiter.ts';

const { values: args } = parseArgs({
  options: { 'duration-ms': { type: 'string', default: '2000' }, json: { type: 'boolean', default: false } },
});
const DURATION = Math.min(Math.max(Number(args['duration-ms']), 200), 20_000);
const NOISY_INFLIGHT = 64;
const buf = randomBytes(16 * 1024);

// Calibrate the work unit to ~200 µs on this machine, now.
function calibrate(): { rounds: number; workMs: number } {
  for (let rounds = 1; ; rounds *= 2) {
    const t = performance.now();
    for (let k = 0; k < 50; k++) for (let i = 0; i < rounds; i++) createHash('sha256').update(buf).digest();
    const workMs = (performance.now() - t) / 50;
    if (workMs >= 0.2 || rounds >= 4096) return { rounds, workMs };
  }
}
const { rounds, workMs } = calibrate();
const work = () => {
  for (let i = 0; i < rounds; i++) createHash('sha256').update(buf).digest();
};

/** 0 for ok, else the retry hint in ms (RATE_LIMITED). */
type Outcome = number;

function makeServer(limiter: RateLimiter | undefined) {
  return (identity: string, tenant: string): Promise<Outcome> =>
    new Promise((resolve) => {
      setImmediate(() => {
        const d = limiter?.take(identity, tenant);
        if (d && !d.allow) return resolve(d.retryAfterMs);
        work();
        resolve(0);
      });
    });
}

function pct(lat: number[], q: number): number {
  const s = Float64Array.from(lat).sort();
  return Math.round((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0) * 1000);
}

interface Row {
  phase: string;
  quietRequests: number;
  quietP50Us: number;
  quietP99Us: number;
  quietP50Ratio: number;
  noisyOk: number;
  noisyLimited: number;
}

async function phase(
  name: string,
  noisy: 'none' | 'abusive' | 'polite',
  limiter: RateLimiter | undefined,
  unloadedP50?: number,
): Promise<Row> {
  const call = makeServer(limiter);
  const t0 = performance.now();
  const lat: number[] = [];
  let ok = 0;
  let limited = 0;
  const quiet = async () => {
    while (performance.now() - t0 < DURATION) {
      const s = performance.now();
      await call('spiffe://acme/quiet/svc', 'acme/quiet');
      lat.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const noisyWorker = async () => {
    while (performance.now() - t0 < DURATION) {
      const retry = await call('spiffe://acme/noisy/svc', 'acme/noisy');
      if (retry === 0) ok++;
      else {
        limited++;
        if (noisy === 'polite') await new Promise((r) => setTimeout(r, retry));
      }
    }
  };
  await Promise.all([
    quiet(),
    ...(noisy !== 'none' ? Array.from({ length: NOISY_INFLIGHT }, noisyWorker) : []),
  ]);
  const p50 = pct(lat, 0.5);
  return {
    phase: name,
    quietRequests: lat.length,
    quietP50Us: p50,
    quietP99Us: pct(lat, 0.99),
    quietP50Ratio: unloadedP50 ? Math.round((p50 / unloadedP50) * 100) / 100 : 1,
    noisyOk: ok,
    noisyLimited: limited,
  };
}

const limits = () =>
  new RateLimiter({
    perIdentity: { ratePerSec: 10_000, burst: 1_000 },
    perTenant: { ratePerSec: 2_000, burst: 200 },
    tenantOverrides: new Map([['acme/noisy', { ratePerSec: 500, burst: 50 }]]),
  });

const rows: Row[] = [];
const alone = await phase('quiet alone (unloaded)', 'none', limits());
rows.push(alone);
rows.push(await phase('quiet + noisy, no limits', 'abusive', undefined, alone.quietP50Us));
rows.push(await phase('quiet + noisy (retries at once), buckets', 'abusive', limits(), alone.quietP50Us));
rows.push(await phase('quiet + noisy (honours hint), buckets', 'polite', limits(), alone.quietP50Us));
const limitedRow = rows[2] as Row;
const summary = {
  workUsPerRequest: Math.round(workMs * 1000),
  quietP50RatioWithLimits: limitedRow.quietP50Ratio,
  withinTwoX: limitedRow.quietP50Ratio <= 2,
  noisyRateLimited: limitedRow.noisyLimited > 0,
};

if (args.json) {
  for (const r of rows) process.stdout.write(`${JSON.stringify({ bench: 'rate-limit', ...r })}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'rate-limit', summary })}\n`);
} else {
  const head = [
    'phase',
    'quiet reqs',
    'quiet p50 µs',
    'quiet p99 µs',
    'p50 vs unloaded',
    'noisy ok',
    'noisy limited',
  ];
  const table = rows.map((r) => [
    r.phase,
    String(r.quietRequests),
    String(r.quietP50Us),
    String(r.quietP99Us),
    `${r.quietP50Ratio}x`,
    String(r.noisyOk),
    String(r.noisyLimited),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...table.map((t) => (t[i] ?? '').length)));
  const fmt = (c: string[]) =>
    c.map((x, i) => (i === 0 ? x.padEnd(w[i] ?? 0) : x.padStart(w[i] ?? 0))).join('  ');
  process.stdout.write(`${fmt(head)}\n${table.map(fmt).join('\n')}\n\n`);
  process.stdout.write(
    `quiet tenant p50 with limits: ${limitedRow.quietP50Ratio}x unloaded (target <= 2x: ${summary.withinTwoX ? 'MET' : 'NOT MET'}); ` +
      `noisy tenant refused ${limitedRow.noisyLimited} times with RATE_LIMITED\n`,
  );
}
