/**
 * Compare mode: diff two results.json files record by record (scenario × concurrency) and flag
 * changes beyond the noise. The noise of a metric is the larger of its relative spread
 * ((max-min)/median) in either file and a floor (default 10%; p99 gets twice the floor because
 * tails are noisier). A change worse than that is a regression, better is an improvement.
 */
import type { ResultsFile, ScenarioRecord, Spread } from './result-types.ts';
import { relativeSpread } from './stats.ts';
import { fmtNum } from './markdown.ts';

export type Verdict = 'regression' | 'improvement' | 'same';

export interface Finding {
  readonly scenario: string;
  readonly concurrency: number;
  readonly metric: 'throughput' | 'p50Us' | 'p99Us' | 'serverCpuUsPerOp';
  readonly a: number;
  readonly b: number;
  /** (b - a) / a; positive means the number went up. */
  readonly change: number;
  readonly noise: number;
  readonly verdict: Verdict;
}

export interface Comparison {
  readonly findings: readonly Finding[];
  readonly regressions: readonly Finding[];
  readonly onlyInA: readonly string[];
  readonly onlyInB: readonly string[];
}

const METRICS: readonly { key: Finding['metric']; higherIsBetter: boolean; floorFactor: number }[] = [
  { key: 'throughput', higherIsBetter: true, floorFactor: 1 },
  { key: 'p50Us', higherIsBetter: false, floorFactor: 1 },
  { key: 'p99Us', higherIsBetter: false, floorFactor: 2 },
  { key: 'serverCpuUsPerOp', higherIsBetter: false, floorFactor: 1 },
];

const key = (r: ScenarioRecord): string => `${r.scenario}@c${r.concurrency}`;

/** Diff `b` (new) against `a` (baseline). */
export function compareResults(
  a: Pick<ResultsFile, 'records'>,
  b: Pick<ResultsFile, 'records'>,
  floor = 0.1,
): Comparison {
  const am = new Map(a.records.map((r) => [key(r), r]));
  const bm = new Map(b.records.map((r) => [key(r), r]));
  const findings: Finding[] = [];
  for (const [k, ra] of am) {
    const rb = bm.get(k);
    if (!rb) continue;
    for (const m of METRICS) {
      const sa = ra[m.key] as Spread | undefined;
      const sb = rb[m.key] as Spread | undefined;
      if (!sa || !sb || !(sa.median > 0) || !Number.isFinite(sb.median)) continue;
      const change = (sb.median - sa.median) / sa.median;
      const noise = Math.max(floor * m.floorFactor, relativeSpread(sa), relativeSpread(sb));
      const worse = m.higherIsBetter ? -change : change;
      const verdict: Verdict = worse > noise ? 'regression' : -worse > noise ? 'improvement' : 'same';
      findings.push({
        scenario: ra.scenario,
        concurrency: ra.concurrency,
        metric: m.key,
        a: sa.median,
        b: sb.median,
        change,
        noise,
        verdict,
      });
    }
  }
  return {
    findings,
    regressions: findings.filter((f) => f.verdict === 'regression'),
    onlyInA: [...am.keys()].filter((k) => !bm.has(k)),
    onlyInB: [...bm.keys()].filter((k) => !am.has(k)),
  };
}

/** Markdown report of a comparison: regressions first, then improvements, then counts. */
export function renderComparison(c: Comparison, nameA: string, nameB: string): string {
  const row = (f: Finding): string =>
    `| ${f.scenario} | ${f.concurrency} | ${f.metric} | ${fmtNum(f.a)} | ${fmtNum(f.b)} | ${f.change >= 0 ? '+' : ''}${(f.change * 100).toFixed(1)}% | ±${(f.noise * 100).toFixed(0)}% | ${f.verdict === 'regression' ? '**REGRESSION**' : f.verdict} |`;
  const head =
    '| scenario | c | metric | A | B | change | noise | verdict |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |';
  const improvements = c.findings.filter((f) => f.verdict === 'improvement');
  const lines = [
    `# bench compare: A = ${nameA}, B = ${nameB}`,
    '',
    `${c.regressions.length} regression(s), ${improvements.length} improvement(s), ${c.findings.length - c.regressions.length - improvements.length} within noise, over ${new Set(c.findings.map((f) => `${f.scenario}@${f.concurrency}`)).size} common records.`,
    '',
  ];
  if (c.regressions.length > 0) lines.push('## Regressions', '', head, ...c.regressions.map(row), '');
  if (improvements.length > 0) lines.push('## Improvements', '', head, ...improvements.map(row), '');
  if (c.onlyInA.length > 0) lines.push(`Only in A: ${c.onlyInA.join(', ')}`, '');
  if (c.onlyInB.length > 0) lines.push(`Only in B: ${c.onlyInB.join(', ')}`, '');
  return lines.join('\n');
}
