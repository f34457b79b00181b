/** `summary.md`: machine and revision, target checks, one table per group, delegated scripts. */
import type { DelegatedResult, ResultsFile, ScenarioRecord, Spread } from './result-types.ts';

/** A number with thousands separators and a precision that suits its size. */
export function fmtNum(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '–';
  const abs = Math.abs(x);
  const d = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
}

/** Median with its min–max spread when there was more than one run. */
export function fmtSpread(s: Spread | undefined, scale = 1): string {
  if (s === undefined || s.n === 0) return '–';
  const m = fmtNum(s.median / scale);
  return s.n > 1 ? `${m} (${fmtNum(s.min / scale)}–${fmtNum(s.max / scale)})` : m;
}

const ratio = (x: number | undefined): string => (x === undefined ? '–' : `${(x * 100).toFixed(0)}%`);
const esc = (s: string): string => s.replace(/\|/g, '\\|');

function recordRow(r: ScenarioRecord): string {
  return `| ${esc(r.scenario)} | ${r.concurrency} | ${fmtSpread(r.throughput)} ${r.unit} | ${fmtNum(r.p50Us.median)} | ${fmtNum(r.p90Us.median)} | ${fmtNum(r.p99Us.median)} | ${fmtSpread(r.serverCpuUsPerOp)} | ${fmtSpread(r.clientCpuUsPerOp)} | ${fmtSpread(r.peakRssBytes, 1024 * 1024)} | ${ratio(r.ratios?.echo)} | ${ratio(r.ratios?.inProcess)} | ${ratio(r.ratios?.pkcs11)} | ${r.notes ? esc(r.notes) : ''} |`;
}

const HEADER =
  '| scenario | c | throughput: median (min–max) | p50 µs | p90 µs | p99 µs | server CPU µs/op | client CPU µs/op | server peak RSS MiB | vs echo | vs in-process | vs PKCS#11 | notes |\n' +
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';

function delegatedSection(d: DelegatedResult): string {
  const head = `### ${d.script}: ${d.status} (${d.durationS.toFixed(1)} s)`;
  const detail = d.detail
    ? `\n\n${d.detail
        .split('\n')
        .map((l) => `> ${l}`)
        .join('\n')}`
    : '';
  if (d.records.length === 0) return head + detail;
  const rows = d.records.slice(0, 60).map((r) => {
    if (typeof r !== 'object' || r === null) return `| ${esc(JSON.stringify(r))} |`;
    const entries = Object.entries(r as Record<string, unknown>).map(
      ([k, v]) => `${k}=${typeof v === 'number' ? fmtNum(v) : esc(JSON.stringify(v)).slice(0, 80)}`,
    );
    return `| ${entries.join(', ')} |`;
  });
  const more = d.records.length > 60 ? `\n\n(${d.records.length - 60} more records in results.json)` : '';
  return `${head}${detail}\n\n| record |\n| --- |\n${rows.join('\n')}${more}`;
}

/**
 * One row per daemon scenario at its best concurrency: the numbers the README quotes, each next
 * to its ceilings (echo at the same concurrency, the single-core in-process rate, raw PKCS#11).
 */
export function renderHeadline(res: Pick<ResultsFile, 'records'>): string {
  const names = [...new Set(res.records.filter((r) => r.kind === 'daemon').map((r) => r.scenario))];
  const rows = names.map((n) => {
    const best = res.records
      .filter((r) => r.scenario === n)
      .sort((a, b) => b.throughput.median - a.throughput.median)[0] as ScenarioRecord;
    return `| ${esc(n)} | ${best.concurrency} | ${fmtSpread(best.throughput)} ${best.unit} | ${fmtNum(best.p50Us.median)} / ${fmtNum(best.p99Us.median)} | ${fmtNum(best.serverCpuUsPerOp?.median)} | ${ratio(best.ratios?.echo)} | ${ratio(best.ratios?.inProcess)} | ${ratio(best.ratios?.pkcs11)} |`;
  });
  return [
    '| daemon scenario | best c | throughput | p50 / p99 µs | server CPU µs/op | vs echo | vs in-process | vs PKCS#11 |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

/** The whole summary. */
/** "3 run(s)", naming the records with another count (a paired echo has one per window it shares). */
function runsNote(records: ResultsFile['records']): string {
  const count = new Map<number, number>();
  for (const r of records) count.set(r.runs.length, (count.get(r.runs.length) ?? 0) + 1);
  const usual = [...count].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 0;
  const others = [...new Set(records.filter((r) => r.runs.length !== usual).map((r) => r.scenario))];
  const except = others.map((n) => {
    const ks = [...new Set(records.filter((r) => r.scenario === n).map((r) => r.runs.length))];
    return `${n}: ${ks.join('/')}`;
  });
  return `${usual} run(s)${except.length > 0 ? ` (${except.join('; ')})` : ''}`;
}

export function renderSummary(res: ResultsFile): string {
  const m = res.machine;
  const lines: string[] = [
    `# keybroker bench: ${res.mode} run, ${res.startedAt.slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `- machine: ${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, kernel ${m.kernel}, ${m.platform}`,
    `- runtime: Node ${m.node}, OpenSSL ${m.openssl}; server and load generator ${m.pinned ? 'pinned to separate cores (taskset)' : 'NOT pinned (no taskset or one core)'}`,
    `- git: ${res.git.revision.slice(0, 12)}${res.git.dirty ? ' (uncommitted changes)' : ''}; duration ${(res.durationS / 60).toFixed(1)} min`,
    `- 1-min load average: ${res.loadAverage.atStart.toFixed(1)} at start, ${res.loadAverage.atEnd.toFixed(1)} at end${res.loadAverage.atStart > m.cores || res.loadAverage.atEnd > m.cores ? ' — other work shared the machine: read the ratios (measured in the same run), not the absolute numbers' : ''}`,
    ...(res.merged ?? []).map(
      (m) =>
        `- re-measured ${m.startedAt.slice(0, 16).replace('T', ' ')} UTC (git ${m.git.revision.slice(0, 12)}, load ${m.loadAverage.atStart.toFixed(1)}) and merged in: ${m.scenarios.join(', ')}`,
    ),
    `- TLS: ${
      Object.entries(res.tls)
        .map(([k, v]) => `${k} ${v}`)
        .join('; ') || 'not probed'
    }`,
    `- each number is the median of ${runsNote(res.records)}, (min–max) when there were several; c = calls in flight; latency is per call; CPU µs per op (per item for batches, per MiB for streams)`,
    '',
    '## Targets',
    '',
    '| check | target | measured | result |',
    '| --- | --- | --- | --- |',
    ...res.targets.map(
      (t) =>
        `| ${esc(t.name)} | ${esc(t.target)} | ${esc(t.measured)} | ${t.pass === undefined ? '–' : t.pass ? 'pass' : '**FAIL**'} |`,
    ),
    '',
  ];
  if (res.records.some((r) => r.kind === 'daemon')) {
    lines.push('## Headline (each daemon scenario at its best concurrency)', '', renderHeadline(res), '');
  }
  const groups = [...new Set(res.records.map((r) => r.group))];
  for (const g of groups) {
    lines.push(`## ${g}`, '', HEADER);
    for (const r of res.records.filter((x) => x.group === g)) lines.push(recordRow(r));
    lines.push('');
  }
  if (res.missing.length > 0) {
    lines.push(
      '## Not measured in this run',
      '',
      ...res.missing.map((x) => `- **${x.scenario}**: ${x.reason}`),
      '',
    );
  }
  if (res.delegated.length > 0) {
    lines.push('## Per-area scripts (run as children with --json)', '');
    for (const d of res.delegated) lines.push(delegatedSection(d), '');
  }
  return lines.join('\n');
}
