/**
 * `chart.svg`, hand-written: one panel per group, throughput against concurrency (log₂ axis),
 * daemon scenarios as solid lines with min–max bars, the echo ceiling dashed, in-process and raw
 * PKCS#11 ceilings as dotted horizontal lines (they are single-core rates, not sweeps).
 */
import type { ResultsFile, ScenarioRecord } from './result-types.ts';
import { fmtNum } from './markdown.ts';

const W = 520;
const H = 380;
const LEGEND_ROWS = 8;
const M = { left: 64, right: 16, top: 34, bottom: 52 + LEGEND_ROWS * 14 };
const COLS = 2;
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const CEILING_STYLE = {
  'ceiling-echo': { color: '#444444', dash: '6 4' },
  'ceiling-in-process': { color: '#888888', dash: '2 3' },
  'ceiling-pkcs11': { color: '#b07d00', dash: '2 3' },
} as const;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A "nice" tick step (1, 2 or 5 × 10^k) for a range split into about `n` steps. */
export function niceStep(range: number, n = 5): number {
  if (!(range > 0)) return 1;
  const raw = range / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

interface Series {
  readonly name: string;
  readonly kind: ScenarioRecord['kind'];
  readonly unit: string;
  readonly points: readonly { c: number; y: number; lo: number; hi: number }[];
}

function seriesOf(records: readonly ScenarioRecord[], name: string): Series | undefined {
  const rs = records.filter((r) => r.scenario === name).sort((a, b) => a.concurrency - b.concurrency);
  const first = rs[0];
  if (!first) return undefined;
  return {
    name,
    kind: first.kind,
    unit: first.unit,
    points: rs.map((r) => ({
      c: r.concurrency,
      y: r.throughput.median,
      lo: r.throughput.min,
      hi: r.throughput.max,
    })),
  };
}

function panel(group: string, all: readonly ScenarioRecord[], ox: number, oy: number): string {
  const inGroup = all.filter((r) => r.group === group);
  const names = [...new Set(inGroup.map((r) => r.scenario))];
  for (const r of inGroup) {
    for (const n of [r.ceilingsOf?.echo, r.ceilingsOf?.inProcess, r.ceilingsOf?.pkcs11]) {
      if (n !== undefined && !names.includes(n)) names.push(n);
    }
  }
  const series = names.map((n) => seriesOf(all, n)).filter((s): s is Series => s !== undefined);
  // Ceilings in a different unit than the panel's main series would mislead: leave them out.
  const mainUnit = series.find((s) => s.kind === 'daemon')?.unit ?? series[0]?.unit;
  const shown = series.filter(
    (s) =>
      s.unit === mainUnit ||
      (mainUnit === 'req/s' && s.unit === 'ops/s') ||
      (mainUnit === 'items/s' && s.unit === 'ops/s'),
  );
  const sweep = shown.filter((s) => s.kind === 'daemon' || s.kind === 'ceiling-echo' || s.points.length > 1);
  const xs = [...new Set(sweep.flatMap((s) => s.points.map((p) => p.c)))].sort((a, b) => a - b);
  if (xs.length === 0) xs.push(1);
  let x0 = Math.log2(xs[0] as number);
  let x1 = Math.log2(xs[xs.length - 1] as number);
  if (x1 - x0 < 1) {
    x0 -= 0.5;
    x1 += 0.5;
  }
  // Scale to the sweeps; a single-core ceiling far above them is marked at the top instead of
  // squashing every curve into the bottom of the panel.
  const scaled = sweep.length > 0 ? sweep : shown;
  const yMax = Math.max(1e-9, ...scaled.flatMap((s) => s.points.map((p) => p.hi)));
  const step = niceStep(yMax * 1.08);
  const yTop = Math.ceil((yMax * 1.08) / step) * step;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const px = (c: number): number => ox + M.left + ((Math.log2(c) - x0) / (x1 - x0)) * pw;
  const py = (y: number): number => oy + M.top + ph - (y / yTop) * ph;
  const out: string[] = [];
  out.push(
    `<g><text x="${ox + M.left}" y="${oy + 20}" font-size="14" font-weight="bold">${esc(group)}</text>`,
  );
  for (let y = 0; y <= yTop + step / 2; y += step) {
    out.push(
      `<line x1="${ox + M.left}" x2="${ox + M.left + pw}" y1="${py(y).toFixed(1)}" y2="${py(y).toFixed(1)}" stroke="#e6e6e6"/>`,
      `<text x="${ox + M.left - 6}" y="${(py(y) + 4).toFixed(1)}" font-size="10" text-anchor="end">${step >= 1 ? Math.round(y).toLocaleString('en-US') : fmtNum(y)}</text>`,
    );
  }
  for (const c of xs) {
    out.push(
      `<line x1="${px(c).toFixed(1)}" x2="${px(c).toFixed(1)}" y1="${oy + M.top + ph}" y2="${oy + M.top + ph + 4}" stroke="#333"/>`,
      `<text x="${px(c).toFixed(1)}" y="${oy + M.top + ph + 16}" font-size="10" text-anchor="middle">${c}</text>`,
    );
  }
  out.push(
    `<rect x="${ox + M.left}" y="${oy + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    `<text x="${ox + M.left + pw / 2}" y="${oy + M.top + ph + 30}" font-size="10" text-anchor="middle">calls in flight (log scale)</text>`,
    `<text x="${ox + 14}" y="${oy + M.top + ph / 2}" font-size="10" text-anchor="middle" transform="rotate(-90 ${ox + 14} ${oy + M.top + ph / 2})">${esc(mainUnit ?? '')}</text>`,
  );
  let colour = 0;
  const legend: { label: string; color: string; dash: string }[] = [];
  for (const s of shown) {
    const isCeiling = s.kind !== 'daemon';
    const style = isCeiling
      ? CEILING_STYLE[s.kind as keyof typeof CEILING_STYLE]
      : { color: PALETTE[colour++ % PALETTE.length] as string, dash: '' };
    const dash = style.dash ? ` stroke-dasharray="${style.dash}"` : '';
    const horizontal = isCeiling && s.kind !== 'ceiling-echo' && s.points.length >= 1 && !sweep.includes(s);
    if (horizontal) {
      const best = Math.max(...s.points.map((p) => p.y));
      const label = `${s.name} (ceiling, 1 core): ${fmtNum(best)} ${s.unit}`;
      if (best <= yTop) {
        out.push(
          `<line x1="${ox + M.left}" x2="${ox + M.left + pw}" y1="${py(best).toFixed(1)}" y2="${py(best).toFixed(1)}" stroke="${style.color}" stroke-width="1.5"${dash}/>`,
        );
        legend.push({ label, color: style.color, dash: style.dash });
      } else {
        legend.push({ label: `${label} (above the plot)`, color: style.color, dash: style.dash });
      }
      continue;
    }
    const pts = s.points.map((p) => `${px(p.c).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    out.push(
      `<polyline points="${pts}" fill="none" stroke="${style.color}" stroke-width="${isCeiling ? 1.5 : 2}"${dash}/>`,
    );
    for (const p of s.points) {
      if (p.hi > p.lo) {
        out.push(
          `<line x1="${px(p.c).toFixed(1)}" x2="${px(p.c).toFixed(1)}" y1="${py(p.lo).toFixed(1)}" y2="${py(p.hi).toFixed(1)}" stroke="${style.color}"/>`,
        );
      }
      out.push(
        `<circle cx="${px(p.c).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="2.5" fill="${style.color}"/>`,
      );
    }
    if (s.kind === 'ceiling-echo') {
      // Echo lines share one style: name each where it ends.
      const last = s.points[s.points.length - 1];
      if (last) {
        out.push(
          `<text x="${(px(last.c) - 4).toFixed(1)}" y="${(py(last.y) - 6).toFixed(1)}" font-size="9" text-anchor="end" fill="${style.color}">${esc(s.name)}</text>`,
        );
      }
    }
    legend.push({ label: isCeiling ? `${s.name} (ceiling)` : s.name, color: style.color, dash: style.dash });
  }
  legend.slice(0, LEGEND_ROWS).forEach((l, i) => {
    const lx = ox + M.left;
    const ly = oy + M.top + ph + 46 + i * 14;
    const dash = l.dash ? ` stroke-dasharray="${l.dash}"` : '';
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly - 3}" y2="${ly - 3}" stroke="${l.color}" stroke-width="2"${dash}/>`,
      `<text x="${lx + 22}" y="${ly}" font-size="10">${esc(l.label)}</text>`,
    );
  });
  out.push('</g>');
  return out.join('\n');
}

/** The whole chart as an SVG document. Groups without any sweep are still drawn (one point). */
export function renderChart(res: Pick<ResultsFile, 'records' | 'mode' | 'startedAt' | 'machine'>): string {
  const groups = [
    ...new Set(
      res.records.filter((r) => r.kind === 'daemon' || r.kind === 'ceiling-echo').map((r) => r.group),
    ),
  ];
  for (const g of new Set(res.records.map((r) => r.group))) if (!groups.includes(g)) groups.push(g);
  const rows = Math.max(1, Math.ceil(groups.length / COLS));
  const width = W * COLS;
  const height = H * rows + 40;
  const title = `keybroker bench (${res.mode}) ${res.startedAt.slice(0, 10)}: throughput vs concurrency, ${res.machine.cores} cores, ${res.machine.cpuModel}`;
  const body = groups.map((g, i) => panel(g, res.records, (i % COLS) * W, 40 + Math.floor(i / COLS) * H));
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
