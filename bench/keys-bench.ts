/**
 * Keys service benchmark: per operation and engine, the rate through the real daemon (gRPC +
 * mTLS, audit on, SoftHSM2) at a few concurrencies, next to the in-process rate of the same
 * operation measured in this run, and the native liboqs 0.16 AVX2 reference (ML-KEM-768 encaps
 * 10.5 µs, decaps 13.2 µs; ML-DSA-65 sign 85 µs, verify 31 µs). Target: daemon rate ≥ 80% of
 * in-process × cores used (the worker pool for offloaded operations, one core otherwise).
 *
 * Batch RPCs (SignBatch, VerifyBatch, DecapsulateBatch, EncapsulateBatch of 64 items) are where a caller reaches
 * the target for fast operations: one call's fixed cost (~250 µs: TLS, gate, audit) is above a
 * whole ML-KEM operation, so single calls are bound by the per-call ceiling (GetPublicKey row).
 *
 * Two daemon phases: "openssl" (every routable operation on OpenSSL) and "liboqs" (encaps,
 * decaps, sign and verify on liboqs-wasm; keygen must stay on OpenSSL, and the composite's
 * ML-DSA half needs context strings, so it stays on OpenSSL too).
 * The load client runs in this process on the same 2-core host as the daemon and its workers, so
 * the daemon can never get both cores: server CPU µs per op is printed as the fairer figure.
 *
 *   node bench/keys-bench.ts               # table
 *   node bench/keys-bench.ts --json        # one JSON record per line
 *   node bench/keys-bench.ts --quick       # shorter cells
 *   node bench/keys-bench.ts --audit-off   # diagnostic: daemon without its audit log
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AsymmetricRuntime } from '../daemon/src/keys/asymmetric-key-material.ts';
import {
  COMPOSITE_LABEL,
  compositeMessageRepresentative,
} from '../daemon/src/pqc/composite-mldsa65-ecdsa-p256.ts';
import { softwareEcdsaP256Signer } from '../daemon/src/pqc/classical-signatures.ts';
import { LiboqsEngine } from '../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../daemon/src/pqc/openssl-engine.ts';
import type { EngineName } from '../daemon/src/pqc/pqc-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter, type PqcRoutingConfig } from '../daemon/src/pqc/pqc-router.ts';
import { readCpuSeconds } from './lib/proc-stats.ts';
import { initTestDataDir, removeDataDir, startDaemon } from '../test/support/daemon-harness.ts';
import type { KeybrokerClient } from '../test/support/daemon-harness.ts';

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    // Diagnostic: run the daemon with the audit log off, to see what the fail-closed audit costs.
    'audit-off': { type: 'boolean', default: false },
  },
});
const CELL_MS = args.quick ? 600 : 1500;
const IN_PROCESS_MS = args.quick ? 300 : 1000;
const CONCURRENCY = [1, 16, 64];
const WORKERS = availableParallelism();
const NATIVE_US: Record<string, number> = {
  'ml-kem-768 encapsulate': 10.5,
  'ml-kem-768 decapsulate': 13.2,
  'ml-dsa-65 sign': 85,
  'ml-dsa-65 verify': 31,
};

interface Rec {
  op: string;
  /** Items per call (batch RPCs); rates below are items/s for them. */
  items: number;
  engine: EngineName | '-';
  concurrency: number;
  daemonOpsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuUsPerOp: number;
  inProcessOpsPerSec: number;
  /** In-process CPU µs per operation, and that over the daemon's server CPU µs per op/item. */
  inProcessCpuUsPerOp: number;
  cpuEfficiency: number;
  coresUsed: number;
  efficiency: number;
  nativeUs?: number;
}

function routing(engine: EngineName): PqcRoutingConfig {
  const routes = { ...DEFAULT_PQC_ROUTING.routes };
  for (const op of ['kem.encapsulate', 'kem.decapsulate', 'sig.sign', 'sig.verify'] as const)
    routes[op] = engine;
  return { ...DEFAULT_PQC_ROUTING, routes };
}

// --- in-process ---
/** CPU µs per operation of each measure() call, in call order (see inProcessCpu). */
const cpuLog: number[] = [];

async function measure(fn: () => unknown, ms: number): Promise<number> {
  for (let i = 0; i < 10; i++) await fn();
  let n = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  while (performance.now() - start < ms) {
    await fn();
    n++;
  }
  const cpu = process.cpuUsage(cpu0);
  cpuLog.push((cpu.user + cpu.system) / Math.max(n, 1));
  return (n * 1000) / (performance.now() - start);
}

/**
 * In-process rates and CPU µs per operation. The CPU figure does not move with the host's other
 * load the way a rate does, so daemon CPU per item against it is the steadier efficiency.
 */
async function inProcess(
  engine: EngineName,
): Promise<{ rates: Record<string, number>; cpuUs: Record<string, number> }> {
  cpuLog.length = 0;
  const rates = await inProcessRates(engine);
  const cpuUs = Object.fromEntries(Object.keys(rates).map((k, i) => [k, cpuLog[i] ?? 0]));
  return { rates, cpuUs };
}

/** In-process single-thread rate of each daemon operation, on the phase's routing. */
async function inProcessRates(engine: EngineName): Promise<Record<string, number>> {
  const rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], routing(engine)),
  );
  const kemE = rt.router.engineFor('kem.encapsulate');
  const decE = rt.router.engineFor('kem.decapsulate');
  const sigE = rt.router.engineFor('sig.sign');
  const kem = rt.openssl.generateKeyPair('ml-kem-768');
  const kemKey = rt.router.loadPrivateKey('kem.decapsulate', 'ml-kem-768', kem.seed!.expose(), kem.publicKey);
  const ct = kemE.encapsulate('ml-kem-768', kem.publicKey).cipherText;
  const dsa = rt.openssl.generateKeyPair('ml-dsa-65');
  const dsaKey = rt.router.loadPrivateKey('sig.sign', 'ml-dsa-65', dsa.seed!.expose(), dsa.publicKey);
  const msg = Buffer.alloc(256, 1);
  const sig = sigE.sign(dsaKey, msg);
  const xw = rt.xwing.generateKeyPair();
  const xwKey = rt.xwing.loadPrivateKey(xw.seed.expose(), xw.publicKey);
  const xwCt = rt.xwing.encapsulate(xw.publicKey).cipherText;
  const compMl = rt.openssl.loadPrivateKey('ml-dsa-65', 'seed', dsa.seed!.expose());
  const ec = softwareEcdsaP256Signer();
  const box = await rt.boxes.seal('x-wing', xw.publicKey, msg);
  const boxKey = rt.boxes.loadRecipientKey('x-wing', xw.seed.expose());
  const mlBox = await rt.boxes.seal('ml-kem-768', kem.publicKey, msg);
  const mlBoxKey = rt.boxes.loadRecipientKey('ml-kem-768', kem.seed!.expose());
  return {
    'ml-kem-768 encapsulate': await measure(
      () => kemE.encapsulate('ml-kem-768', kem.publicKey),
      IN_PROCESS_MS,
    ),
    'ml-kem-768 decapsulate': await measure(() => decE.decapsulate(kemKey, ct), IN_PROCESS_MS),
    'ml-dsa-65 sign': await measure(() => sigE.sign(dsaKey, msg), IN_PROCESS_MS),
    'ml-dsa-65 verify': await measure(
      () => rt.router.verify('ml-dsa-65', dsa.publicKey, msg, sig),
      IN_PROCESS_MS,
    ),
    'x-wing decapsulate': await measure(() => rt.xwing.decapsulate(xwKey, xwCt), IN_PROCESS_MS),
    'composite sign': await measure(async () => {
      const m = compositeMessageRepresentative(msg);
      await Promise.all([rt.openssl.sign(compMl, m, COMPOSITE_LABEL), ec.sign(m)]);
    }, IN_PROCESS_MS),
    'open box x-wing': await measure(() => rt.boxes.open('x-wing', boxKey, box), IN_PROCESS_MS),
    'open box ml-kem-768': await measure(() => rt.boxes.open('ml-kem-768', mlBoxKey, mlBox), IN_PROCESS_MS),
  };
}

// --- through the daemon ---
type Call = () => Promise<unknown>;

async function cell(fn: Call, concurrency: number, ms: number, pid: number) {
  for (let i = 0; i < 20; i++) await fn();
  const lat: number[] = [];
  const cpu0 = readCpuSeconds(pid);
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await fn();
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  const cpu = readCpuSeconds(pid) - cpu0;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return {
    opsPerSec: lat.length / secs,
    p50: q(0.5),
    p99: q(0.99),
    cpuUsPerOp: (cpu * 1e6) / Math.max(lat.length, 1),
  };
}

/** Items per call of the batch scenarios (SignBatch, VerifyBatch, DecapsulateBatch, EncapsulateBatch). */
const BATCH = 64;

interface DaemonOp {
  readonly call: Call;
  readonly offloaded: boolean;
  /** Batch RPCs: items per call, and the single operation whose in-process rate is the ceiling. */
  readonly items?: number;
  readonly inProcessOf?: string;
}

async function daemonOps(c: KeybrokerClient): Promise<Record<string, DaemonOp>> {
  const k = c.keys;
  for (const [keyId, algorithm] of [
    ['kem', 'KEY_ALGORITHM_ML_KEM_768'],
    ['dsa', 'KEY_ALGORITHM_ML_DSA_65'],
    ['xw', 'KEY_ALGORITHM_X_WING'],
    ['comp', 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256'],
  ])
    await k.unary('CreateKey', { keyId, algorithm });
  const msg = Buffer.alloc(256, 1);
  const ct = (await k.unary<{ ciphertext: Buffer }>('Encapsulate', { keyId: 'kem' })).ciphertext;
  const xct = (await k.unary<{ ciphertext: Buffer }>('Encapsulate', { keyId: 'xw' })).ciphertext;
  const sig = (await k.unary<{ signature: Buffer }>('Sign', { keyId: 'dsa', message: msg })).signature;
  const box = (await k.unary<{ sealed: Buffer }>('SealBox', { keyId: 'xw', plaintext: msg })).sealed;
  const mlBox = (await k.unary<{ sealed: Buffer }>('SealBox', { keyId: 'kem', plaintext: msg })).sealed;
  return {
    // The per-call floor of the daemon (gRPC + mTLS, call gate, audit record): no crypto at all.
    'get public key (floor)': { call: () => k.unary('GetPublicKey', { keyId: 'kem' }), offloaded: false },
    'ml-kem-768 encapsulate': { call: () => k.unary('Encapsulate', { keyId: 'kem' }), offloaded: false },
    'ml-kem-768 decapsulate': {
      call: () => k.unary('Decapsulate', { keyId: 'kem', ciphertext: ct }),
      offloaded: false,
    },
    'ml-dsa-65 sign': { call: () => k.unary('Sign', { keyId: 'dsa', message: msg }), offloaded: true },
    'ml-dsa-65 verify': {
      call: () => k.unary('Verify', { keyId: 'dsa', version: 1, message: msg, signature: sig }),
      offloaded: false,
    },
    'x-wing decapsulate': {
      call: () => k.unary('Decapsulate', { keyId: 'xw', ciphertext: xct }),
      offloaded: false,
    },
    'composite sign': { call: () => k.unary('Sign', { keyId: 'comp', message: msg }), offloaded: true },
    'open box x-wing': {
      call: () => k.unary('OpenBox', { keyId: 'xw', version: 1, sealed: box }),
      offloaded: false,
    },
    'open box ml-kem-768': {
      call: () => k.unary('OpenBox', { keyId: 'kem', version: 1, sealed: mlBox }),
      offloaded: false,
    },
    // Batches: where a caller reaches the target, one call carrying BATCH items (the per-call
    // overhead is paid once per batch). ML-DSA / ML-KEM batches of 8+ items run on the pool,
    // one share per worker, so their ceiling is in-process × workers.
    [`ml-dsa-65 sign batch ×${BATCH}`]: {
      call: () => k.unary('SignBatch', { keyId: 'dsa', messages: Array.from({ length: BATCH }, () => msg) }),
      offloaded: true,
      items: BATCH,
      inProcessOf: 'ml-dsa-65 sign',
    },
    [`ml-dsa-65 verify batch ×${BATCH}`]: {
      call: () =>
        k.unary('VerifyBatch', {
          keyId: 'dsa',
          version: 1,
          items: Array.from({ length: BATCH }, () => ({ message: msg, signature: sig })),
        }),
      offloaded: true,
      items: BATCH,
      inProcessOf: 'ml-dsa-65 verify',
    },
    [`ml-kem-768 decapsulate batch ×${BATCH}`]: {
      call: () =>
        k.unary('DecapsulateBatch', {
          keyId: 'kem',
          version: 1,
          ciphertexts: Array.from({ length: BATCH }, () => ct),
        }),
      offloaded: true,
      items: BATCH,
      inProcessOf: 'ml-kem-768 decapsulate',
    },
    [`ml-kem-768 encapsulate batch ×${BATCH}`]: {
      call: () => k.unary('EncapsulateBatch', { keyId: 'kem', count: BATCH }),
      offloaded: true,
      items: BATCH,
      inProcessOf: 'ml-kem-768 encapsulate',
    },
  };
}

async function phase(engine: EngineName): Promise<Rec[]> {
  const dir = await initTestDataDir();
  const cfgPath = join(dir, 'keybroker.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  const r = routing(engine);
  cfg.pqc = { routes: r.routes, offload: r.offload, workers: WORKERS };
  if (args['audit-off']) cfg.audit = { enabled: false };
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const d = await startDaemon({
    dataDir: dir,
    waitReady: false,
    timeoutMs: 60_000,
  });
  const out: Rec[] = [];
  try {
    await waitReady(d.client('service'));
    // Measured while the daemon idles, on the same routing, so both columns share the host's load.
    const { rates: inProc, cpuUs: inProcCpu } = await inProcess(engine);
    const ops = await daemonOps(d.client('service'));
    const pid = d.proc.pid ?? 0;
    for (const [op, o] of Object.entries(ops)) {
      const ip = inProc[o.inProcessOf ?? op] ?? 0;
      const coresUsed = o.offloaded ? WORKERS : 1;
      const items = o.items ?? 1;
      for (const conc of CONCURRENCY) {
        const c = await cell(o.call, conc, CELL_MS, pid);
        // Batch cells: rates and CPU per item, so they read against the single operation.
        const m = { ...c, opsPerSec: c.opsPerSec * items, cpuUsPerOp: c.cpuUsPerOp / items };
        out.push({
          op,
          items,
          engine: op.endsWith('(floor)')
            ? '-'
            : op.startsWith('composite') || op.startsWith('open box') || op.startsWith('x-wing')
              ? 'openssl'
              : engine,
          concurrency: conc,
          daemonOpsPerSec: Math.round(m.opsPerSec),
          p50Ms: round(m.p50),
          p99Ms: round(m.p99),
          serverCpuUsPerOp: Math.round(m.cpuUsPerOp),
          inProcessOpsPerSec: Math.round(ip),
          inProcessCpuUsPerOp: Math.round(inProcCpu[o.inProcessOf ?? op] ?? 0),
          cpuEfficiency: (inProcCpu[o.inProcessOf ?? op] ?? 0) / Math.max(m.cpuUsPerOp, 1),
          coresUsed,
          efficiency: ip > 0 ? m.opsPerSec / (ip * coresUsed) : 0,
          ...(NATIVE_US[o.inProcessOf ?? op] !== undefined
            ? { nativeUs: NATIVE_US[o.inProcessOf ?? op] }
            : {}),
        });
        if (!args.json) process.stderr.write('.');
      }
    }
  } finally {
    await d.stop();
    removeDataDir(dir);
  }
  return out;
}

const round = (x: number) => Math.round(x * 100) / 100;

async function waitReady(c: KeybrokerClient): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      await c.keys.unary('ListKeys', {});
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const load0 = loadavg()[0] ?? 0;
const recs = [...(await phase('openssl')), ...(await phase('liboqs'))];
const load1 = loadavg()[0] ?? 0;
if (args.json) {
  for (const r of recs) process.stdout.write(JSON.stringify({ bench: 'keys', ...r }) + '\n');
} else {
  process.stderr.write('\n');
  const cpu = cpus()[0]?.model ?? 'cpu';
  console.log(
    `Keys service on ${cpu}, ${cpus().length} cores, pool of ${WORKERS} workers, Node ${process.version}; load average ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at end`,
  );
  console.log(
    '| operation | engine | conc | daemon ops/s (batches: items/s) | p50 ms (per call) | p99 ms | server CPU µs/op (per item) | in-process ops/s | in-process CPU µs/op | cores used | daemon / (in-proc × cores) | in-proc CPU / server CPU | native µs |',
  );
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of recs) {
    console.log(
      `| ${r.op} | ${r.engine} | ${r.concurrency} | ${r.daemonOpsPerSec} | ${r.p50Ms} | ${r.p99Ms} | ${r.serverCpuUsPerOp} | ${r.inProcessOpsPerSec || '-'} | ${r.inProcessCpuUsPerOp || '-'} | ${r.coresUsed} | ${r.efficiency > 0 ? `${Math.round(r.efficiency * 100)}%` : '-'} | ${r.cpuEfficiency > 0 ? `${Math.round(r.cpuEfficiency * 100)}%` : '-'} | ${r.nativeUs ?? '-'} |`,
    );
  }
}
