/**
 * Where a daemon's CPU went: reads a V8 .cpuprofile (from KB_BENCH_DAEMON_PROF=1 with
 * --keep-work) and prints self time by function and by file, biggest first.
 *
 * Usage: node bench/tools/profile-summary.ts FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (µs) per function and per file of a V8 CPU profile. */
export function summarizeProfile(p: Profile): {
  byFunction: Map<string, number>;
  byFile: Map<string, number>;
  totalUs: number;
} {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let totalUs = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    const n = byId.get(id);
    if (!n) return;
    totalUs += dt;
    const file =
      n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|daemon)\//, '$1/') ||
      `(${n.callFrame.functionName || 'native'})`;
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${file}:${n.callFrame.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt);
    byFile.set(file, (byFile.get(file) ?? 0) + dt);
  });
  return { byFunction, byFile, totalUs };
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' } },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: profile-summary.ts FILE.cpuprofile [--top N]');
  const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const top = Number(values.top);
  const show = (title: string, m: Map<string, number>): void => {
    process.stdout.write(`\n${title} (self time, of ${(s.totalUs / 1e6).toFixed(2)} s sampled)\n`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      process.stdout.write(`${((100 * v) / s.totalUs).toFixed(1).padStart(5)}%  ${k}\n`);
    }
  };
  show('by file', s.byFile);
  show('by function', s.byFunction);
}

if (import.meta.main) main();
