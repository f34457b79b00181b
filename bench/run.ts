/**
 * keybroker benchmark suite.
 *
 *   node bench/run.ts [--quick] [--only a,b,prefix*] [--out DIR] [--runs N] [--keep-work]
 *   node bench/run.ts --compare A.json B.json [--threshold 0.1]
 *   node bench/run.ts --list
 *   node bench/run.ts --render results.json [--out DIR]
 *   node bench/run.ts --only a,b --merge BASE/results.json --out DIR   (re-run some, fold into BASE)
 *
 * The suite writes DIR/results.json, DIR/summary.md and DIR/chart.svg (default DIR:
 * bench/results/tmp/<mode>-<time>). Compare prints a markdown diff and exits 1 when B has
 * regressions beyond the noise against A, 0 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CORES, stopAllChildren } from './lib/child-process.ts';
import { compareResults, renderComparison } from './lib/compare.ts';
import { renderSummary } from './lib/markdown.ts';
import { mergeResults } from './lib/merge.ts';
import type { ResultsFile } from './lib/result-types.ts';
import { RESULTS_SCHEMA } from './lib/result-types.ts';
import { renderChart } from './lib/svg-chart.ts';
import { SCENARIOS, unknownScenarioNames } from './scenarios.ts';
import { runSuite } from './suite.ts';

const REPO_ROOT = resolve(import.meta.dirname, '..');

function usage(msg: string): never {
  process.stderr.write(
    `bench: ${msg}\nusage: node bench/run.ts [--quick] [--only a,b] [--out DIR] [--runs N] | --compare A.json B.json | --list\n`,
  );
  process.exit(2);
}

function loadResults(path: string): ResultsFile {
  const r = JSON.parse(readFileSync(path, 'utf8')) as ResultsFile;
  if (r.schema !== RESULTS_SCHEMA) usage(`${path}: schema ${String(r.schema)}, expected ${RESULTS_SCHEMA}`);
  return r;
}

/** Write results.json, summary.md and chart.svg into `out`. */
export function writeOutputs(out: string, res: ResultsFile): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify(res, null, 2) + '\n');
  writeFileSync(join(out, 'summary.md'), renderSummary(res));
  writeFileSync(join(out, 'chart.svg'), renderChart(res));
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      runs: { type: 'string' },
      compare: { type: 'boolean', default: false },
      threshold: { type: 'string', default: '0.1' },
      list: { type: 'boolean', default: false },
      render: { type: 'string' },
      'keep-work': { type: 'boolean', default: false },
      merge: { type: 'string' },
    },
  });
  if (values.list) {
    for (const s of SCENARIOS) {
      const flag = s.fullOnly ? ' (full only)' : s.quickOnly ? ' (quick only)' : '';
      process.stdout.write(`${s.name.padEnd(34)} ${s.phase.padEnd(20)} ${s.description}${flag}\n`);
    }
    process.stdout.write(
      'delegated: hsm-bench hierarchy-bench pqc-bench audit-bench rate-limit-bench (--only delegated, or by name)\n',
    );
    return 0;
  }
  if (values.render !== undefined) {
    // Re-render summary.md and chart.svg from an existing results.json.
    // With --merge BASE: fold this (later, partial) result into BASE first.
    const next = loadResults(values.render);
    const res = values.merge === undefined ? next : mergeResults(loadResults(values.merge), next, SCENARIOS);
    const out = resolve(values.out ?? join(values.render, '..'));
    writeOutputs(out, res);
    process.stderr.write(`bench: rendered ${out}/summary.md and chart.svg\n`);
    return 0;
  }
  if (values.compare) {
    const [a, b] = positionals;
    if (a === undefined || b === undefined) usage('--compare needs two results.json paths');
    const threshold = Number(values.threshold);
    if (!(threshold > 0 && threshold < 1)) usage('--threshold must be between 0 and 1');
    const c = compareResults(loadResults(a), loadResults(b), threshold);
    process.stdout.write(renderComparison(c, a, b) + '\n');
    return c.regressions.length > 0 ? 1 : 0;
  }
  if (positionals.length > 0) usage(`unexpected argument ${positionals[0]}`);
  const only = values.only
    ?.split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  const unknown = only
    ? unknownScenarioNames(only).filter(
        (n) =>
          !/^(delegated\*?|hsm-bench|hierarchy-bench|pqc-bench|audit-bench|rate-limit-bench)(\.ts)?$/.test(n),
      )
    : [];
  if (unknown.length > 0) usage(`unknown scenario(s): ${unknown.join(', ')} (see --list)`);
  const runs = values.runs === undefined ? (values.quick ? 1 : 3) : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 10) usage('--runs must be 1..10');
  const mode = values.quick ? 'quick' : 'full';
  const out = resolve(
    values.out ??
      join(REPO_ROOT, 'bench/results/tmp', `${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}`),
  );

  // The runner (provisioning, admin timings) stays off the server's core.
  if (CORES.pinned) spawnSync('taskset', ['-pc', CORES.client, String(process.pid)], { stdio: 'ignore' });
  const workDir = mkdtempSync(join(tmpdir(), 'kb-bench-'));
  // Interrupted: stop the daemon/echo/load children and remove the scratch dir, then exit.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`bench: ${sig}, stopping children\n`);
      void stopAllChildren(3000).finally(() => {
        if (!values['keep-work']) rmSync(workDir, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
  const t0 = Date.now();
  try {
    const res = await runSuite({
      repoRoot: REPO_ROOT,
      quick: values.quick,
      only,
      workDir,
      runs,
      budgetMs: values.quick ? 170_000 : 28 * 60_000,
      log: (m) => process.stderr.write(m + '\n'),
    });
    const final = values.merge === undefined ? res : mergeResults(loadResults(values.merge), res, SCENARIOS);
    writeOutputs(out, final);
    process.stderr.write(
      `bench: done in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${res.records.length} records, ${res.missing.length} missing -> ${out}\n`,
    );
    for (const t of res.targets)
      process.stderr.write(
        `  ${t.pass === undefined ? '-   ' : t.pass ? 'pass' : 'FAIL'} ${t.name}: ${t.measured}\n`,
      );
    return 0;
  } finally {
    if (values['keep-work']) process.stderr.write(`bench: work dir kept at ${workDir}\n`);
    else rmSync(workDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
