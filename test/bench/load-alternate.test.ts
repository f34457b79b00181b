/**
 * The load generator's alternate mode: one process drives two echo servers in alternating
 * slices (A B A B ...) and prints one run line per side, the ceiling's under its scenario name.
 * Server B spins 3 ms of CPU per call (KB_BENCH_INJECT_DELAY_US), so every figure that lands on
 * the wrong side shows: asserts the attribution, never absolute speed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { JsonLineChild, NODE } from '../../bench/lib/child-process.ts';
import { writeTlsMaterial } from '../../bench/lib/tls-material.ts';
import type { ClientTls, LoadSpec, RunLine } from '../../bench/load/load-spec.ts';

const REPO = resolve(import.meta.dirname, '../..');
const DELAY_US = 3000;
const dir = mkdtempSync(join(tmpdir(), 'kb-load-alt-'));
const servers: JsonLineChild[] = [];
let tls: ClientTls;
let fast: { port: number; pid: number };
let slow: { port: number; pid: number };

async function echoServer(
  files: { caCert: string; serverCert: string; serverKey: string },
  delayUs: number,
): Promise<{ port: number; pid: number }> {
  const s = new JsonLineChild(
    'echo server',
    [
      NODE,
      join(REPO, 'bench/echo/echo-server.ts'),
      '--ca',
      files.caCert,
      '--cert',
      files.serverCert,
      '--key',
      files.serverKey,
    ],
    { env: { ...process.env, KB_BENCH_INJECT_DELAY_US: String(delayUs) } },
  );
  servers.push(s);
  const { port } = await s.waitFor(
    (v): v is { event: string; port: number } => (v as { event?: string }).event === 'listening',
    30_000,
    'listening',
  );
  return { port, pid: s.pid };
}

before(async () => {
  const files = await writeTlsMaterial(join(dir, 'pki'));
  tls = {
    caCert: files.caCert,
    identities: [{ cert: files.clientCert, key: files.clientKey }],
    serverNameOverride: 'localhost',
  };
  fast = await echoServer(files, 0);
  slow = await echoServer(files, DELAY_US);
});
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

test('alternate: both servers are driven in the same window and each side keeps its own figures', () => {
  const spec: LoadSpec = {
    target: `127.0.0.1:${fast.port}`,
    tls,
    op: { kind: 'echo', bytes: 64 },
    concurrencies: [1, 4],
    runs: 2,
    warmupS: 0.1,
    durationS: 0.4,
    minCalls: 8,
    maxCalls: 100_000,
    maxChannels: 2,
    serverPid: fast.pid,
    callTimeoutMs: 10_000,
    alternate: {
      scenario: 'slow-echo',
      target: `127.0.0.1:${slow.port}`,
      tls,
      op: { kind: 'echo', bytes: 64 },
      serverPid: slow.pid,
      slices: 4,
    },
  };
  const specFile = join(dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const r = spawnSync(NODE, [join(REPO, 'bench/load/load-generator.ts'), specFile], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `load generator exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const lines = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as RunLine);
  assert.equal(lines.length, 2 * 2 * 2, 'one line per side, run and concurrency');
  for (const c of [1, 4])
    for (const run of [0, 1]) {
      const mine = lines.filter((l) => l.concurrency === c && l.run === run);
      const a = mine.find((l) => l.scenario === undefined);
      const b = mine.find((l) => l.scenario === 'slow-echo');
      assert.ok(a && b, `c=${c} run ${run}: a line for each side (${JSON.stringify(mine)})`);
      const where = `c=${c} run ${run}`;
      assert.equal(a.sample.errors + b.sample.errors, 0, `${where}: failed calls`);
      // Every slow call spins DELAY_US on the slow server; the fast server never does.
      assert.ok(
        (b.sample.serverCpuUsPerOp ?? 0) >= 0.8 * DELAY_US,
        `${where}: slow server CPU ${b.sample.serverCpuUsPerOp} µs/op`,
      );
      assert.ok(
        (a.sample.serverCpuUsPerOp ?? Infinity) < 0.5 * DELAY_US,
        `${where}: fast server CPU ${a.sample.serverCpuUsPerOp} µs/op`,
      );
      assert.ok(b.sample.p50Us >= DELAY_US, `${where}: slow p50 ${b.sample.p50Us} µs`);
      assert.ok(a.sample.p50Us < b.sample.p50Us, `${where}: fast p50 ${a.sample.p50Us} µs`);
      // Both sides ran for the whole window, in slices: about durationS each.
      for (const [side, l] of [
        ['fast', a],
        ['slow', b],
      ] as const)
        assert.ok(
          l.sample.durationS >= 0.3 && l.sample.durationS < 5,
          `${where}: ${side} measured ${l.sample.durationS} s`,
        );
    }
});
