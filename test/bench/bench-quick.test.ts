/**
 * The harness end to end on its cheapest scenario: `--quick --only echo-1k` starts the echo
 * server and a load-generator process over mTLS and writes the three outputs. A second run with
 * KB_BENCH_INJECT_DELAY_US (the echo server spins 20 ms per call) must be flagged by --compare.
 * Asserts structure and the comparison verdict only, never absolute speed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import type { ResultsFile } from '../../bench/lib/result-types.ts';

const REPO = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'kb-bench-quick-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function quickEcho(out: string, env: NodeJS.ProcessEnv = {}): ResultsFile {
  const r = spawnSync(
    process.execPath,
    [join(REPO, 'bench/run.ts'), '--quick', '--only', 'echo-1k', '--out', out],
    {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: 180_000,
    },
  );
  assert.equal(
    r.status,
    0,
    `bench/run.ts --quick --only echo-1k exited ${r.status}: ${r.stderr.slice(-2000)}`,
  );
  for (const f of ['results.json', 'summary.md', 'chart.svg'])
    assert.ok(existsSync(join(out, f)), `${f} not written`);
  return JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ResultsFile;
}

test('--quick --only echo-1k completes, and --compare flags an injected server slowdown', () => {
  const base = quickEcho(join(dir, 'base'));
  const got = base.records.map((r) => `${r.scenario}@${r.concurrency}`);
  assert.deepEqual(got, ['echo-1k@1', 'echo-1k@16'], `records of a quick echo-1k run: ${got.join(', ')}`);
  for (const r of base.records) {
    assert.ok(r.throughput.median > 0, `${r.scenario}@${r.concurrency}: throughput ${r.throughput.median}`);
    assert.ok((r.serverCpuUsPerOp?.median ?? 0) > 0, `${r.scenario}@${r.concurrency}: no server CPU per op`);
    assert.ok((r.peakRssBytes?.median ?? 0) > 0, `${r.scenario}@${r.concurrency}: no peak RSS`);
    assert.equal(r.runs[0]?.errors, 0, `${r.scenario}@${r.concurrency}: failed calls`);
  }
  assert.match(base.tls.echo ?? '', /^TLSv1\.3 .* X25519MLKEM768$/, `negotiated TLS: ${base.tls.echo}`);
  assert.match(readFileSync(join(dir, 'base/summary.md'), 'utf8'), /\| echo-1k \| 16 \|/);

  quickEcho(join(dir, 'slow'), { KB_BENCH_INJECT_DELAY_US: '20000' });
  const cmp = spawnSync(
    process.execPath,
    [join(REPO, 'bench/run.ts'), '--compare', join(dir, 'base/results.json'), join(dir, 'slow/results.json')],
    { encoding: 'utf8' },
  );
  assert.equal(
    cmp.status,
    1,
    `--compare base slow exited ${cmp.status}, want 1 (regressions):\n${cmp.stdout}`,
  );
  assert.match(cmp.stdout, /\| echo-1k \| 16 \| throughput \|.*\*\*REGRESSION\*\*/, cmp.stdout);
  assert.match(cmp.stdout, /\| echo-1k \| 16 \| serverCpuUsPerOp \|.*\*\*REGRESSION\*\*/, cmp.stdout);
});
