/**
 * Bounds on what one message or one identity's streams can cost the real daemon: a batch body of
 * millions of empty items is refused before it is decoded (the daemon's /healthz stays quick while
 * it arrives), client deadlines are clamped to limits.maxDeadlineMs, and an identity holds at most
 * limits.maxStreamsPerIdentity open streams (RESOURCE_EXHAUSTED with a retry-after-ms trailer).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import type { Settings } from 'node:http2';
import { join } from 'node:path';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode } from './e2e-helpers.ts';

const SENDER = join(import.meta.dirname, '../support/raw-unary-sender.ts');
let d: DaemonHandle;
let svc: KeybrokerClient;

before(async () => {
  d = await startDaemon({
    env: {
      KB_LIMITS_MAX_DEADLINE_MS: '3000',
      KB_LIMITS_MAX_STREAMS_PER_IDENTITY: '2',
      KB_LIMITS_MAX_CONCURRENT_STREAMS: '50',
    },
  });
  svc = d.client('service');
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

/** One call with a raw body of `repeats` empty items, sent from a child process (see raw-unary-sender.ts). */
async function rawUnary(
  rpcPath: string,
  repeats: number,
): Promise<{ code: number; details: string; ms: number }> {
  const child = spawn(process.execPath, [SENDER, d.address, d.pki(''), rpcPath, String(repeats)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  await once(child, 'exit');
  return JSON.parse(out) as { code: number; details: string; ms: number };
}

/** Poll /healthz every 10 ms while `work` runs; the slowest answer in ms. */
async function slowestHealthz<T>(work: Promise<T>): Promise<{ value: T; slowest: number; polls: number }> {
  let done = false;
  let slowest = 0;
  let polls = 0;
  const poller = (async () => {
    while (!done) {
      const t0 = performance.now();
      const r = await fetch(`http://127.0.0.1:${d.metricsPort}/healthz`);
      await r.text();
      slowest = Math.max(slowest, performance.now() - t0);
      polls++;
      await new Promise((res) => setTimeout(res, 10));
    }
  })();
  const value = await work;
  done = true;
  await poller;
  return { value, slowest, polls };
}

/** The daemon's CPU seconds so far (prom-client's process metric). */
async function cpuSeconds(): Promise<number> {
  const { body } = await d.metrics();
  const m = /^keybroker_process_cpu_seconds_total (\S+)$/m.exec(body);
  assert.ok(m !== null, 'process CPU metric present');
  return Number(m[1]);
}

test('a batch body of millions of empty items is refused undecoded; /healthz stays quick', async () => {
  await svc.crypto.unary('Encrypt', { plaintext: Buffer.from('warm') }); // connection and key warm
  // /healthz answers within 100 ms on an idle host; this one may be shared and loaded, so the
  // latency bound adds twice an idle baseline, and the daemon's CPU time for the call (which
  // load does not inflate; ~10 s before the pre-scan) is bounded too.
  const idle = await slowestHealthz(new Promise((r) => setTimeout(r, 1000)));
  const cases = [
    { name: 'EncryptBatch, 3.5 M empty items (7 MB)', rpc: 'EncryptBatch', repeats: 3_500_000 },
    { name: 'DecryptBatch, 4 M empty items (8 MB)', rpc: 'DecryptBatch', repeats: 4_000_000 },
  ];
  for (const c of cases) {
    const cpu0 = await cpuSeconds();
    // `0a 00`: field 1, length-delimited, length 0 (an empty item), repeated
    const { value, slowest, polls } = await slowestHealthz(
      rawUnary(`/keybroker.v1.Crypto/${c.rpc}`, c.repeats),
    );
    const cpu = (await cpuSeconds()) - cpu0;
    assert.equal(value.code, GrpcCode.INVALID_ARGUMENT, `${c.name}: ${value.code} ${value.details}`);
    assert.match(value.details, /too many fields/, `${c.name}: says why`);
    assert.ok(value.ms < 5_000, `${c.name}: answered in ${value.ms.toFixed(0)} ms`);
    assert.ok(cpu < 0.5, `${c.name}: daemon CPU ${cpu.toFixed(2)} s`);
    assert.ok(
      polls >= 1 && slowest < 100 + 2 * idle.slowest,
      `${c.name}: slowest /healthz ${slowest.toFixed(1)} ms (${polls} polls; idle baseline ${idle.slowest.toFixed(1)} ms)`,
    );
  }
  // A genuine batch at the item limit still passes.
  const items = Array.from({ length: 1000 }, () => ({ plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }));
  const r = await svc.crypto.unary<{ results: unknown[] }>('EncryptBatch', { items });
  assert.equal(r.results.length, 1000, 'a 1000-item batch is served');
});

function openStream(): { s: ClientDuplexStream<object, object>; ended: Promise<ServiceError | null> } {
  const s = svc.crypto.stream('EncryptStream', { deadlineMs: 600_000 });
  const ended = new Promise<ServiceError | null>((resolve) => {
    s.on('data', () => undefined);
    s.on('error', (e: ServiceError) => resolve(e));
    s.on('end', () => resolve(null));
  });
  s.write({ init: { aad: Buffer.alloc(0) } });
  return { s, ended };
}

test('a client deadline beyond limits.maxDeadlineMs is clamped', { timeout: 30_000 }, async () => {
  // The client asks for 10 minutes and never finishes the stream: the daemon ends it after 3 s.
  const t0 = performance.now();
  const { ended } = openStream();
  const e = await ended;
  const ms = performance.now() - t0;
  assert.ok(e !== null, 'the stream was ended by the server');
  assert.equal(e.code, GrpcCode.DEADLINE_EXCEEDED, `code ${e.code} ${e.details}`);
  assert.ok(ms >= 2_800 && ms < 15_000, `clamped deadline hit after ${ms.toFixed(0)} ms`);
});

test(
  'an identity holds at most maxStreamsPerIdentity open streams; another identity is unaffected',
  { timeout: 30_000 },
  async () => {
    const open = [openStream(), openStream()];
    await new Promise((r) => setTimeout(r, 200));
    const third = openStream();
    const e = await third.ended;
    assert.ok(e !== null, 'the third stream is refused');
    assert.equal(e.code, GrpcCode.RESOURCE_EXHAUSTED, `code ${e.code} ${e.details}`);
    assert.match(e.details, /open streams/);
    const hint = Number(e.metadata.get('retry-after-ms')[0]);
    assert.ok(Number.isFinite(hint) && hint > 0, `retry-after-ms trailer on the stream: ${hint}`);
    // The admin identity is another caller: its stream opens (and is refused by policy, not by count).
    const other = d.client('admin').crypto.stream('EncryptStream', { deadlineMs: 5_000 });
    const otherEnd = new Promise<ServiceError | null>((resolve) => {
      other.on('data', () => undefined);
      other.on('error', (err: ServiceError) => resolve(err));
      other.on('end', () => resolve(null));
    });
    other.write({ init: { aad: Buffer.alloc(0) } });
    other.end();
    const oe = await otherEnd;
    assert.notEqual(oe?.code, GrpcCode.RESOURCE_EXHAUSTED, `another identity: ${oe?.code} ${oe?.details}`);
    // Closing one frees a slot.
    for (const o of open) o.s.end();
    await Promise.all(open.map((o) => o.ended));
    const again = openStream();
    again.s.end();
    assert.equal(await again.ended, null, 'a stream opens again once the others closed');
  },
);

test('the server announces limits.maxConcurrentStreams as its HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS', async () => {
  const session = connect(`https://${d.address}`, {
    ca: readFileSync(d.pki('ca.pem')),
    cert: readFileSync(d.pki('service.pem')),
    key: readFileSync(d.pki('service-key.pem')),
    servername: 'localhost',
  });
  try {
    const [settings] = (await once(session, 'remoteSettings')) as [Settings];
    assert.equal(settings.maxConcurrentStreams, 50);
  } finally {
    session.close();
  }
});
