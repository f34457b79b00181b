/**
 * Audit benchmark, all in one run on the same disk:
 *   - raw write+fsync per record (the ceiling for "one fsync per event")
 *   - FileAuditSink with 1 appender (every record waits for its own fsync)
 *   - FileAuditSink with many concurrent appenders (group commit)
 *   - FileAuditSink with fsync stubbed out (CPU ceiling: canonical bytes, hashing, JSON)
 *   - in-process AES-256-GCM Encrypt (1 KiB) unaudited vs audited (await append per op)
 * Prints a table (records/s, fsyncs, records per fsync, p50/p99 append latency); --json for records.
 *
 *   node bench/audit-bench.ts [--dir DIR] [--duration-ms 2000] [--json]
 * Target: group commit >= 20,000 audited records/s on this 2-core machine.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, writeSync, fsyncSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AuditRecordInput } from '../daemon/src/audit/audit-sink.ts';
import { verifyAuditFile } from '../daemon/src/audit/audit-verifier.ts';
import { createSoftwareSigner } from '../daemon/src/audit/checkpoint.ts';
import { openAuditFile } from '../daemon/src/audit/audit-file.ts';
import type { AuditFileOpener } from '../daemon/src/audit/audit-file.ts';
import { FileAuditSink } from '../daemon/src/audit/file-audit-sink.ts';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    'duration-ms': { type: 'string', default: '2000' },
    json: { type: 'boolean', default: false },
  },
});
const DURATION = Math.min(Math.max(Number(args['duration-ms']), 200), 20_000);
const TARGET = 20_000;
const base = mkdtempSync(join(args.dir ?? tmpdir(), 'kb-audit-bench-'));
let phaseNo = 0;

interface Row {
  phase: string;
  concurrency: number;
  records: number;
  recordsPerSec: number;
  fsyncs: number;
  recordsPerFsync: number;
  p50Us: number;
  p99Us: number;
  verified: boolean | null;
}

function record(i: number): AuditRecordInput {
  return {
    time: new Date(),
    requestId: `bench-${i}`,
    identity: 'spiffe://acme/t1/bench',
    org: 'acme',
    tenant: 't1',
    rpc: 'keybroker.v1.Crypto/Encrypt',
    customer: 'default',
    keyVersion: 1,
    result: 'ok',
  };
}

function pct(lat: number[], q: number): number {
  if (lat.length === 0) return 0;
  const s = Float64Array.from(lat).sort();
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0);
}

function counting(stubSync = false): { open: AuditFileOpener; syncs: () => number } {
  let n = 0;
  const open: AuditFileOpener = async (path) => {
    const f = await openAuditFile(path);
    return {
      ...f,
      sync: async () => {
        n++;
        if (!stubSync) await f.sync();
      },
    };
  };
  return { open, syncs: () => n };
}

/** Raw ceiling: one line written and fsynced at a time, no chain, no sink. */
function rawFsyncPerRecord(): Row {
  const fd = openSync(join(base, `raw-${++phaseNo}.log`), 'a');
  const line = Buffer.from(`${JSON.stringify(record(0))}\n`);
  const lat: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < DURATION) {
    const s = performance.now();
    writeSync(fd, line);
    fsyncSync(fd);
    lat.push((performance.now() - s) * 1000);
  }
  const el = performance.now() - t0;
  closeSync(fd);
  return {
    phase: 'raw write+fsync per record',
    concurrency: 1,
    records: lat.length,
    recordsPerSec: Math.round((lat.length * 1000) / el),
    fsyncs: lat.length,
    recordsPerFsync: 1,
    p50Us: pct(lat, 0.5),
    p99Us: pct(lat, 0.99),
    verified: null,
  };
}

/** `concurrency` appenders looping on append for DURATION ms. */
async function sinkPhase(phase: string, concurrency: number, stubSync = false): Promise<Row> {
  const path = join(base, `sink-${++phaseNo}.log`);
  const c = counting(stubSync);
  const sink = await FileAuditSink.open({
    path,
    openFile: c.open,
    signer: createSoftwareSigner(),
    checkpointEvery: 10_000,
  });
  const lat: number[] = [];
  let i = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() - t0 < DURATION) {
      const s = performance.now();
      await sink.append(record(i++));
      lat.push((performance.now() - s) * 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const el = performance.now() - t0;
  const syncs = c.syncs();
  await sink.close();
  const v = await verifyAuditFile(path);
  return {
    phase,
    concurrency,
    records: lat.length,
    recordsPerSec: Math.round((lat.length * 1000) / el),
    fsyncs: syncs,
    recordsPerFsync: Math.round((lat.length / Math.max(1, syncs)) * 10) / 10,
    p50Us: pct(lat, 0.5),
    p99Us: pct(lat, 0.99),
    verified: v.ok && v.records === lat.length,
  };
}

/** In-process Encrypt (AES-256-GCM, 1 KiB), with or without awaiting an audit record per op. */
async function encryptPhase(audited: boolean, concurrency: number): Promise<Row> {
  const key = randomBytes(32);
  const pt = randomBytes(1024);
  const path = join(base, `enc-${++phaseNo}.log`);
  const c = counting();
  const sink = audited ? await FileAuditSink.open({ path, openFile: c.open }) : undefined;
  const lat: number[] = [];
  let i = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() - t0 < DURATION) {
      const s = performance.now();
      const iv = randomBytes(12);
      const ci = createCipheriv('aes-256-gcm', key, iv);
      ci.update(pt);
      ci.final();
      ci.getAuthTag();
      if (sink) await sink.append(record(i++));
      else await Promise.resolve();
      lat.push((performance.now() - s) * 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const el = performance.now() - t0;
  await sink?.close();
  return {
    phase: audited ? 'Encrypt 1 KiB + audit (in-process)' : 'Encrypt 1 KiB, no audit (in-process)',
    concurrency,
    records: lat.length,
    recordsPerSec: Math.round((lat.length * 1000) / el),
    fsyncs: audited ? c.syncs() : 0,
    recordsPerFsync: audited ? Math.round((lat.length / Math.max(1, c.syncs())) * 10) / 10 : 0,
    p50Us: pct(lat, 0.5),
    p99Us: pct(lat, 0.99),
    verified: null,
  };
}

const rows: Row[] = [];
rows.push(rawFsyncPerRecord());
rows.push(await sinkPhase('sink, one fsync per record', 1));
for (const c of [16, 64, 256, 1024]) rows.push(await sinkPhase('sink, group commit', c));
rows.push(await sinkPhase('sink, fsync stubbed (CPU ceiling)', 256, true));
for (const c of [256, 1024]) {
  rows.push(await encryptPhase(false, c));
  rows.push(await encryptPhase(true, c));
}
rmSync(base, { recursive: true, force: true });

const best = Math.max(...rows.filter((r) => r.phase === 'sink, group commit').map((r) => r.recordsPerSec));
const single = rows.find((r) => r.phase === 'sink, one fsync per record')?.recordsPerSec ?? 1;
// Audit cost on in-process Encrypt at each concurrency: 1 - audited/unaudited throughput.
const auditCostPct: Record<string, number> = {};
for (const c of [256, 1024]) {
  const plain = rows.find((r) => r.phase.startsWith('Encrypt 1 KiB, no audit') && r.concurrency === c);
  const aud = rows.find((r) => r.phase.startsWith('Encrypt 1 KiB + audit') && r.concurrency === c);
  auditCostPct[c] = Math.round((1 - (aud?.recordsPerSec ?? 0) / (plain?.recordsPerSec ?? 1)) * 1000) / 10;
}
const summary = {
  groupCommitBest: best,
  oneFsyncPerRecord: single,
  speedup: Math.round((best / single) * 10) / 10,
  target: TARGET,
  meetsTarget: best >= TARGET,
  auditCostPct,
};

if (args.json) {
  for (const r of rows) process.stdout.write(`${JSON.stringify({ bench: 'audit', ...r })}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'audit', summary })}\n`);
} else {
  const head = ['phase', 'conc', 'records', 'rec/s', 'fsyncs', 'rec/fsync', 'p50 µs', 'p99 µs', 'verified'];
  const table = rows.map((r) => [
    r.phase,
    String(r.concurrency),
    String(r.records),
    String(r.recordsPerSec),
    String(r.fsyncs),
    String(r.recordsPerFsync),
    String(r.p50Us),
    String(r.p99Us),
    r.verified === null ? '-' : r.verified ? 'yes' : 'NO',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...table.map((t) => (t[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(w[i] ?? 0) : c.padStart(w[i] ?? 0))).join('  ');
  process.stdout.write(`${fmt(head)}\n${table.map(fmt).join('\n')}\n\n`);
  process.stdout.write(
    `group commit best ${best} rec/s vs one fsync per record ${single} rec/s (x${summary.speedup}); ` +
      `target ${TARGET}: ${summary.meetsTarget ? 'MET' : 'NOT MET'}; ` +
      `audit cost on in-process Encrypt (throughput lost): ${Object.entries(auditCostPct)
        .map(([c, p]) => `${p}% at concurrency ${c}`)
        .join(', ')}\n`,
  );
}
