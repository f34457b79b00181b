import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { compareResults, renderComparison } from '../../bench/lib/compare.ts';
import { meta, record, resultsFile } from './bench-fixtures.ts';

const REPO = resolve(import.meta.dirname, '../..');
const enc = meta('encrypt-1k', 'daemon');
const echo = meta('echo-1k', 'ceiling-echo');
/** Baseline: three runs each, spread ±2%. */
const A = resultsFile([
  record(enc, 1, [980, 1000, 1020]),
  record(enc, 16, [4900, 5000, 5100]),
  record(echo, 16, [6900, 7000, 7100]),
]);

test('compare flags changes beyond the noise and nothing else', () => {
  const cases: { name: string; b: ReturnType<typeof resultsFile>; want: string[] }[] = [
    { name: 'identical results', b: A, want: [] },
    {
      name: 'a scenario 30% slower (throughput down, latency and CPU up) is a regression',
      b: resultsFile([
        record(enc, 1, [980, 1000, 1020]),
        record(enc, 16, [3430, 3500, 3570], 1.43),
        record(echo, 16, [6900, 7000, 7100]),
      ]),
      want: [
        'encrypt-1k@16 throughput regression',
        'encrypt-1k@16 p50Us regression',
        'encrypt-1k@16 p99Us regression',
        'encrypt-1k@16 serverCpuUsPerOp regression',
      ],
    },
    {
      name: '3% slower is within the 10% floor',
      b: resultsFile([
        record(enc, 1, [950, 970, 990]),
        record(enc, 16, [4750, 4850, 4950]),
        record(echo, 16, [6900, 7000, 7100]),
      ]),
      want: [],
    },
    {
      name: '15% slower but runs spread 40%: noise, not a regression',
      b: resultsFile([
        record(enc, 1, [980, 1000, 1020]),
        record(enc, 16, [3400, 4250, 5100]),
        record(echo, 16, [6900, 7000, 7100]),
      ]),
      want: [],
    },
    {
      name: '40% faster is an improvement, never a regression',
      b: resultsFile([
        record(enc, 1, [1372, 1400, 1428], 0.7),
        record(enc, 16, [4900, 5000, 5100]),
        record(echo, 16, [6900, 7000, 7100]),
      ]),
      want: [
        'encrypt-1k@1 throughput improvement',
        'encrypt-1k@1 p50Us improvement',
        'encrypt-1k@1 p99Us improvement',
        'encrypt-1k@1 serverCpuUsPerOp improvement',
      ],
    },
  ];
  for (const c of cases) {
    const got = compareResults(A, c.b)
      .findings.filter((f) => f.verdict !== 'same')
      .map((f) => `${f.scenario}@${f.concurrency} ${f.metric} ${f.verdict}`)
      .sort();
    assert.deepEqual(
      got,
      [...c.want].sort(),
      `${c.name}: compareResults(A, B) flagged ${JSON.stringify(got)}`,
    );
  }
});

test('compare reports records present on one side only', () => {
  const b = resultsFile([record(enc, 1, [1000]), record(meta('decrypt-1k', 'daemon'), 1, [900])]);
  const c = compareResults(A, b);
  assert.deepEqual([...c.onlyInA].sort(), ['echo-1k@c16', 'encrypt-1k@c16']);
  assert.deepEqual([...c.onlyInB], ['decrypt-1k@c1']);
  assert.match(renderComparison(c, 'a.json', 'b.json'), /Only in B: decrypt-1k@c1/);
});

const dir = mkdtempSync(join(tmpdir(), 'kb-bench-compare-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('`run.ts --compare` exits 1 on a 30% slowdown and 0 on noise', () => {
  const a = join(dir, 'a.json');
  const slow = join(dir, 'slow.json');
  const same = join(dir, 'same.json');
  writeFileSync(a, JSON.stringify(A));
  writeFileSync(
    slow,
    JSON.stringify(
      resultsFile([
        record(enc, 1, [686, 700, 714], 1.43),
        record(enc, 16, [4900, 5000, 5100]),
        record(echo, 16, [6900, 7000, 7100]),
      ]),
    ),
  );
  writeFileSync(
    same,
    JSON.stringify(
      resultsFile([
        record(enc, 1, [990, 1000, 1010]),
        record(enc, 16, [4950, 5000, 5050]),
        record(echo, 16, [7000, 7050, 7100]),
      ]),
    ),
  );
  const bad = spawnSync(process.execPath, [join(REPO, 'bench/run.ts'), '--compare', a, slow], {
    encoding: 'utf8',
  });
  assert.equal(
    bad.status,
    1,
    `--compare a slow: exit ${bad.status}, want 1; stdout: ${bad.stdout} stderr: ${bad.stderr}`,
  );
  assert.match(bad.stdout, /\| encrypt-1k \| 1 \| throughput \|.*-30\.0%.*\*\*REGRESSION\*\*/, bad.stdout);
  const ok = execFileSync(process.execPath, [join(REPO, 'bench/run.ts'), '--compare', a, same], {
    encoding: 'utf8',
  });
  assert.match(ok, /0 regression\(s\)/, ok);
  const usage = spawnSync(process.execPath, [join(REPO, 'bench/run.ts'), '--compare', a], {
    encoding: 'utf8',
  });
  assert.equal(usage.status, 2, `--compare with one file: exit ${usage.status}, want 2 (usage)`);
});
