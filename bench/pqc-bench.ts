/**
 * Post-quantum engine benchmark: per operation and engine, the in-process single-thread rate and
 * the rate through PqcWorkerPool (ratio to in-process × workers; target ≥ 80%), beside the native
 * liboqs 0.16 AVX2 reference for this machine class, so the distance to native shows.
 * Bounded: about 1 s per in-process cell and 1.5 s per pool cell (≈ 40 s in all).
 *
 *   node bench/pqc-bench.ts            # table
 *   node bench/pqc-bench.ts --json     # one JSON record per line
 *   node bench/pqc-bench.ts --quick    # shorter cells (smoke run)
 *   node bench/pqc-bench.ts --workers N  # pool size (default: available cores)
 * Other load on the machine skews every number: the 1-minute load average is printed at start/end.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { LiboqsEngine } from '../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../daemon/src/pqc/openssl-engine.ts';
import type { EngineName, PqcEngine } from '../daemon/src/pqc/pqc-engine.ts';
import { PqcWorkerPool } from '../daemon/src/pqc/pqc-worker-pool.ts';
import { XWing } from '../daemon/src/pqc/xwing.ts';
import { SealedBoxes } from '../daemon/src/pqc/hpke-sealed-box.ts';

const JSON_OUT = process.argv.includes('--json');
const QUICK = process.argv.includes('--quick');
const IN_PROCESS_MS = QUICK ? 250 : 1000;
const POOL_MS = QUICK ? 400 : 1500;
const POOL_WINDOW = 256; // operations kept in flight against the pool
const BATCH = 64; // items per signMany/verifyMany call

/** Native liboqs 0.16 (AVX2) on this machine class, µs per operation (from the issue). */
const NATIVE_US: Record<string, number> = {
  'ml-kem-768 encapsulate': 10.5,
  'ml-kem-768 decapsulate': 13.2,
  'ml-dsa-65 sign': 85,
  'ml-dsa-65 verify': 31,
};

interface Cell {
  op: string;
  engine: string;
  inProcessOpsPerSec: number;
  inProcessUsPerOp: number;
  /** Process CPU time per in-process op; compare this with native when the host is busy. */
  cpuUsPerOp?: number;
  poolOpsPerSec?: number;
  poolWorkers?: number;
  poolEfficiency?: number;
  nativeUsPerOp?: number;
  timesNative?: number;
}

/** CPU µs per op of the last measureSync: less sensitive than wall time to other load on the host. */
let lastCpuUsPerOp = 0;

function measureSync(fn: () => unknown, ms: number): number {
  for (let i = 0; i < 20; i++) fn(); // warm-up (JIT, key caches)
  let n = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpu0);
  lastCpuUsPerOp = (cpu.user + cpu.system) / n;
  return (n * 1000) / (now - start);
}

async function measureAsync(fn: () => Promise<unknown>, ms: number, window: number): Promise<number> {
  await Promise.all(Array.from({ length: Math.min(window, 64) }, fn)); // warm-up: key caches in workers
  let done = 0;
  const start = performance.now();
  const deadline = start + ms;
  const lane = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await fn();
      done++;
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return (done * 1000) / (performance.now() - start);
}

const cells: Cell[] = [];
function record(c: Cell): void {
  cells.push(c);
  if (JSON_OUT) console.log(JSON.stringify({ bench: 'pqc', ...c }));
  else process.stderr.write(`  measured ${c.op} on ${c.engine}\n`);
}

const wIdx = process.argv.indexOf('--workers');
const workers = wIdx > 0 ? Number(process.argv[wIdx + 1]) : availableParallelism();
const loadStart = loadavg()[0] ?? 0;
const openssl = new OpenSslEngine();
const liboqs = await LiboqsEngine.create();
const engines: PqcEngine[] = [openssl, liboqs];
const pool = await PqcWorkerPool.create({ size: workers });
const msg = new TextEncoder().encode('keybroker bench message, 48 bytes of payload..');

const kem = openssl.generateKeyPair('ml-kem-768');
const kemSeed = kem.seed!.expose();
const dsa = openssl.generateKeyPair('ml-dsa-65');
const dsaSeed = dsa.seed!.expose();
const ct = openssl.encapsulate('ml-kem-768', kem.publicKey).cipherText;
const sig = openssl.sign(openssl.loadPrivateKey('ml-dsa-65', 'seed', dsaSeed), msg);

async function cell(
  op: string,
  engine: PqcEngine,
  inProc: () => unknown,
  pooled: (() => Promise<unknown>) | undefined,
): Promise<void> {
  const rate = measureSync(inProc, IN_PROCESS_MS);
  const c: Cell = {
    op,
    engine: engine.name,
    inProcessOpsPerSec: rate,
    inProcessUsPerOp: 1e6 / rate,
    cpuUsPerOp: lastCpuUsPerOp,
  };
  if (pooled !== undefined) {
    c.poolOpsPerSec = await measureAsync(pooled, POOL_MS, POOL_WINDOW);
    c.poolWorkers = workers;
    c.poolEfficiency = c.poolOpsPerSec / (rate * workers);
  }
  const native = NATIVE_US[op];
  if (native !== undefined) {
    c.nativeUsPerOp = native;
    c.timesNative = (c.cpuUsPerOp ?? c.inProcessUsPerOp) / native;
  }
  record(c);
}

/** Pool rate counted in items, each call carrying BATCH items. */
async function batchCell(
  op: string,
  engine: PqcEngine,
  inProc: () => unknown,
  pooled: () => Promise<unknown>,
): Promise<void> {
  const rate = measureSync(inProc, IN_PROCESS_MS);
  const cpuUsPerOp = lastCpuUsPerOp;
  const calls = await measureAsync(pooled, POOL_MS, 2 * workers);
  const poolOpsPerSec = calls * BATCH;
  record({
    op,
    engine: engine.name,
    inProcessOpsPerSec: rate,
    inProcessUsPerOp: 1e6 / rate,
    cpuUsPerOp,
    poolOpsPerSec,
    poolWorkers: workers,
    poolEfficiency: poolOpsPerSec / (rate * workers),
  });
}

for (const e of engines) {
  const name = e.name as EngineName;
  const kemKey = e.loadPrivateKey('ml-kem-768', 'expanded', kem.secretKey.expose(), kem.publicKey);
  const dsaKey = e.loadPrivateKey('ml-dsa-65', 'expanded', dsa.secretKey.expose(), dsa.publicKey);
  const wireKem = { form: 'seed' as const, bytes: kemSeed, publicKey: kem.publicKey };
  const wireDsa = { form: 'seed' as const, bytes: dsaSeed, publicKey: dsa.publicKey };
  if (e.capabilities.keygenFromSeed) {
    await cell(
      'ml-kem-768 keygen (seed)',
      e,
      () => e.generateKeyPair('ml-kem-768', kemSeed),
      () => pool.generateKeyPair(name, 'ml-kem-768', kemSeed),
    );
    await cell(
      'ml-dsa-65 keygen (seed)',
      e,
      () => e.generateKeyPair('ml-dsa-65', dsaSeed),
      () => pool.generateKeyPair(name, 'ml-dsa-65', dsaSeed),
    );
  } else {
    await cell(
      'ml-kem-768 keygen (random)',
      e,
      () => e.generateKeyPair('ml-kem-768'),
      () => pool.generateKeyPair(name, 'ml-kem-768'),
    );
    await cell(
      'ml-dsa-65 keygen (random)',
      e,
      () => e.generateKeyPair('ml-dsa-65'),
      () => pool.generateKeyPair(name, 'ml-dsa-65'),
    );
  }
  await cell(
    'ml-kem-768 encapsulate',
    e,
    () => e.encapsulate('ml-kem-768', kem.publicKey),
    () => pool.encapsulate(name, 'ml-kem-768', kem.publicKey),
  );
  await cell(
    'ml-kem-768 decapsulate',
    e,
    () => e.decapsulate(kemKey, ct),
    () => pool.decapsulate(name, 'ml-kem-768', wireKem, ct),
  );
  await cell(
    'ml-dsa-65 sign',
    e,
    () => e.sign(dsaKey, msg),
    () => pool.sign(name, 'ml-dsa-65', wireDsa, msg),
  );
  await cell(
    'ml-dsa-65 verify',
    e,
    () => e.verify('ml-dsa-65', dsa.publicKey, msg, sig),
    () => pool.verify(name, 'ml-dsa-65', dsa.publicKey, msg, sig),
  );
  // Batch variants: one worker round trip per BATCH items (what batch RPCs use).
  const items = Array.from({ length: BATCH }, () => ({
    publicKey: dsa.publicKey,
    message: msg,
    signature: sig,
  }));
  const msgs = Array.from({ length: BATCH }, () => msg);
  await batchCell(
    `ml-dsa-65 verify (pool batches of ${BATCH})`,
    e,
    () => e.verify('ml-dsa-65', dsa.publicKey, msg, sig),
    () => pool.verifyMany(name, 'ml-dsa-65', items),
  );
  await batchCell(
    `ml-dsa-65 sign (pool batches of ${BATCH})`,
    e,
    () => e.sign(dsaKey, msg),
    () => pool.signMany(name, 'ml-dsa-65', wireDsa, msgs),
  );
}

// Hybrids and sealed boxes, in-process only (they compose the cells above).
const xwing = new XWing(openssl);
const xkp = xwing.generateKeyPair();
const xkey = xwing.loadPrivateKey(xkp.seed.expose());
const xct = xwing.encapsulate(xkp.publicKey).cipherText;
await cell('x-wing encapsulate', openssl, () => xwing.encapsulate(xkp.publicKey), undefined);
await cell('x-wing decapsulate', openssl, () => xwing.decapsulate(xkey, xct), undefined);
const boxes = new SealedBoxes(openssl);
for (const k of ['ml-kem-768', 'x-wing'] as const) {
  const seed = k === 'x-wing' ? xkp.seed.expose() : kemSeed;
  const pk = k === 'x-wing' ? xkp.publicKey : kem.publicKey;
  const loaded = boxes.loadRecipientKey(k, seed);
  const box = await boxes.seal(k, pk, msg);
  const rate = async (fn: () => Promise<unknown>): Promise<number> => {
    const n = QUICK ? 50 : 300;
    for (let i = 0; i < 10; i++) await fn();
    const t = performance.now();
    for (let i = 0; i < n; i++) await fn();
    return (n * 1000) / (performance.now() - t);
  };
  for (const [what, fn] of [
    ['seal (48 B)', () => boxes.seal(k, pk, msg)],
    ['open (48 B, loaded key)', () => boxes.open(k, loaded, box)],
    ['open (48 B, from seed)', () => boxes.open(k, seed, box)],
  ] as const) {
    const r = await rate(fn);
    record({ op: `hpke ${k} ${what}`, engine: 'openssl', inProcessOpsPerSec: r, inProcessUsPerOp: 1e6 / r });
  }
}
await pool.close();

// Default routing: the faster engine per operation, in-process.
const routing: Record<string, string> = {};
for (const op of ['ml-kem-768 encapsulate', 'ml-kem-768 decapsulate', 'ml-dsa-65 sign', 'ml-dsa-65 verify']) {
  const best = cells
    .filter((c) => c.op === op)
    .sort((a, b) => b.inProcessOpsPerSec - a.inProcessOpsPerSec)[0];
  if (best !== undefined) routing[op] = best.engine;
}

if (JSON_OUT) {
  console.log(
    JSON.stringify({
      bench: 'pqc',
      routing,
      workers,
      cpu: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      loadStart,
      loadEnd: loadavg()[0],
    }),
  );
} else {
  const f = (n: number | undefined, d = 0): string => (n === undefined ? '-' : n.toFixed(d));
  console.log(
    `\npqc engines on ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, pool of ${workers} workers, Node ${process.version}; load average ${loadStart.toFixed(2)} at start, ${(loadavg()[0] ?? 0).toFixed(2)} at end`,
  );
  console.log(
    '| operation | engine | in-process ops/s | wall µs/op | CPU µs/op | native µs | × native (CPU) | pool ops/s | pool / (in-proc × workers) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const c of cells) {
    console.log(
      `| ${c.op} | ${c.engine} | ${f(c.inProcessOpsPerSec)} | ${f(c.inProcessUsPerOp, 1)} | ${f(c.cpuUsPerOp, 1)} | ${f(c.nativeUsPerOp, 1)} | ${f(c.timesNative, 1)} | ${f(c.poolOpsPerSec)} | ${c.poolEfficiency === undefined ? '-' : `${(c.poolEfficiency * 100).toFixed(0)}%`} |`,
    );
  }
  console.log(`\nfaster engine per operation (in-process): ${JSON.stringify(routing)}`);
}
