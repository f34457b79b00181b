/**
 * The client library's envelope helper against the real daemon (gRPC + mTLS, audit on, SoftHSM2),
 * in one run: 1 KiB records encrypted (and decrypted) per record through the Encrypt/Decrypt RPCs,
 * then through EnvelopeEncryptor (local AES-256-GCM under cached data keys from GenerateDataKey).
 * Both sides keep `--inflight` calls outstanding for `--duration-ms` each. Prints a table (or JSON)
 * and writes bench/results/client-envelope.{json,md} with --save. Asserts nothing.
 *
 *   node bench/client-envelope-bench.ts [--duration-ms 5000] [--inflight 32] [--json] [--save]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EnvelopeEncryptor } from '../clients/typescript/src/envelope-encryptor.ts';
import { KeybrokerClient } from '../clients/typescript/src/keybroker-client.ts';
import { initDaemonDir, startDaemon } from './daemon/daemon-process.ts';
import { CORES } from './lib/child-process.ts';

const REPO = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '5000' },
    inflight: { type: 'string', default: '32' },
    json: { type: 'boolean', default: false },
    save: { type: 'boolean', default: false },
  },
});
const DURATION = Math.min(Math.max(Number(args['duration-ms']), 500), 60_000);
const INFLIGHT = Math.min(Math.max(Number(args.inflight), 1), 256);
const RECORD = Buffer.alloc(1024, 0x61);
const AAD = Buffer.from('row');

interface Row {
  readonly path: string;
  readonly records: number;
  readonly seconds: number;
  readonly recordsPerSec: number;
  readonly brokerCalls: number;
}

/** Run `op` with INFLIGHT workers for DURATION; returns records done. */
async function closedLoop(op: (i: number) => Promise<unknown>): Promise<{ n: number; s: number }> {
  const end = performance.now() + DURATION;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (performance.now() < end) await op(n++);
    }),
  );
  return { n, s: (performance.now() - t0) / 1000 };
}

const dataDir = mkdtempSync(join(tmpdir(), 'kb-bench-client-'));
const dir = await initDaemonDir(REPO, dataDir, 'acme', 'alpha');
const daemon = await startDaemon(REPO, dir, { core: CORES.server, env: { KB_RATE_LIMIT_ENABLED: 'false' } });
const client = new KeybrokerClient({
  addresses: [`127.0.0.1:${daemon.grpcPort}`],
  tls: { caFile: dir.pki.caCert, certFile: dir.pki.serviceCert, keyFile: dir.pki.serviceKey },
});
let calls = 0;
client.observer = () => calls++;
const rows: Row[] = [];
const measure = async (path: string, op: (i: number) => Promise<unknown>) => {
  calls = 0;
  const { n, s } = await closedLoop(op);
  rows.push({
    path,
    records: n,
    seconds: +s.toFixed(2),
    recordsPerSec: Math.round(n / s),
    brokerCalls: calls,
  });
};
try {
  // Warm-up: connections, the customer key in the daemon's cache.
  for (let i = 0; i < 50; i++) await client.crypto.encrypt({ plaintext: RECORD, aad: AAD });
  const rpcCts: Buffer[] = [];
  await measure('Encrypt RPC per record', async () => {
    const r = await client.crypto.encrypt({ plaintext: RECORD, aad: AAD });
    if (rpcCts.length < 10_000) rpcCts.push(r.ciphertext);
  });
  await measure('Decrypt RPC per record', (i) =>
    client.crypto.decrypt({ ciphertext: rpcCts[i % rpcCts.length] as Buffer, aad: AAD }),
  );
  const env = new EnvelopeEncryptor(client);
  const recs: Buffer[] = [];
  await measure('encryptRecord (cached data keys)', async () => {
    const r = await env.encryptRecord(RECORD, { aad: AAD });
    if (recs.length < 10_000) recs.push(r);
  });
  await measure('decryptRecord (cached unwrapped keys)', (i) =>
    env.decryptRecord(recs[i % recs.length] as Buffer, { aad: AAD }),
  );
} finally {
  client.close();
  await daemon.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(`${dataDir}-token`, { recursive: true, force: true });
}

const speedup = (a: string, b: string) =>
  (
    (rows.find((r) => r.path === a)?.recordsPerSec ?? 0) /
    (rows.find((r) => r.path === b)?.recordsPerSec ?? 1)
  ).toFixed(1);
const result = {
  bench: 'client-envelope',
  time: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
  recordBytes: RECORD.length,
  inflight: INFLIGHT,
  durationMs: DURATION,
  rows,
  encryptSpeedup: Number(speedup('encryptRecord (cached data keys)', 'Encrypt RPC per record')),
  decryptSpeedup: Number(speedup('decryptRecord (cached unwrapped keys)', 'Decrypt RPC per record')),
};
const md = [
  `# client-envelope bench (${result.time})`,
  '',
  `1 KiB records, ${INFLIGHT} in flight, ${DURATION} ms per path, ${result.machine.cpus} CPUs (${result.machine.model}), Node ${process.version}; daemon with audit on, SoftHSM2, mTLS on 127.0.0.1, rate limits off.`,
  '',
  '| path | records | records/s | broker calls |',
  '| --- | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.path} | ${r.records} | ${r.recordsPerSec} | ${r.brokerCalls} |`),
  '',
  `encryptRecord is ${result.encryptSpeedup}x the per-record Encrypt RPC; decryptRecord ${result.decryptSpeedup}x Decrypt.`,
  '',
].join('\n');
if (args.save) {
  writeFileSync(join(REPO, 'bench/results/client-envelope.json'), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(REPO, 'bench/results/client-envelope.md'), md);
}
process.stdout.write(args.json ? JSON.stringify(result, null, 2) + '\n' : md);
