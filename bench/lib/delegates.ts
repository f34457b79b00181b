/**
 * The per-area benchmark scripts other owners write (hsm, hierarchy, pqc, audit), run as child
 * processes with `--json`. Whatever they print is kept unmodified; a missing, failing or slow
 * script is recorded as such and never stops the suite.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { DelegatedResult } from './result-types.ts';
import { CORES, NODE, pinnedArgv } from './child-process.ts';

/** The per-area scripts the suite runs, in order (HSM, hierarchy, post-quantum, audit, rate limits). */
export const DELEGATED_SCRIPTS = [
  'hsm-bench.ts',
  'hierarchy-bench.ts',
  'pqc-bench.ts',
  'audit-bench.ts',
  'rate-limit-bench.ts',
] as const;

/** Seconds each script took in full runs on the 2-core host (2026-11-22), for sharing the budget. */
const TYPICAL_S: Readonly<Record<(typeof DELEGATED_SCRIPTS)[number], number>> = {
  'hsm-bench.ts': 31,
  'hierarchy-bench.ts': 64,
  'pqc-bench.ts': 46,
  'audit-bench.ts': 35,
  'rate-limit-bench.ts': 8,
};

/**
 * Timeout of the first of `scripts` (the ones still to run): what is left of the budget, shared
 * in proportion to how long each typically takes, so that a long script is not cut at an equal
 * share while short ones finish early. At least 20 s, at most 300 s (45 s in quick mode).
 */
export function delegateTimeoutMs(
  scripts: readonly (typeof DELEGATED_SCRIPTS)[number][],
  leftMs: number,
  quick: boolean,
): number {
  const [first] = scripts;
  const total = scripts.reduce((a, s) => a + TYPICAL_S[s], 0);
  const share = first === undefined || total === 0 ? leftMs : (leftMs * TYPICAL_S[first]) / total;
  return Math.round(Math.max(20_000, Math.min(quick ? 45_000 : 300_000, share)));
}

/** Parse a script's stdout: one JSON document (array or object), or one JSON value per line. */
export function parseJsonRecords(stdout: string): unknown[] {
  const text = stdout.trim();
  if (text === '') return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? v : [v];
  } catch {
    const out: unknown[] = [];
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (!t.startsWith('{') && !t.startsWith('[')) continue;
      try {
        const v: unknown = JSON.parse(t);
        if (Array.isArray(v)) out.push(...(v as unknown[]));
        else out.push(v);
      } catch {
        // a non-JSON line among JSON lines: not a record
        continue;
      }
    }
    return out;
  }
}

/** Run one script (bounded by `timeoutMs`, SIGTERM then SIGKILL); never throws. */
export async function runDelegate(
  benchDir: string,
  script: string,
  opts: { quick: boolean; timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<DelegatedResult> {
  const path = join(benchDir, script);
  if (!existsSync(path)) {
    return {
      script,
      status: 'missing',
      durationS: 0,
      records: [],
      detail: `bench/${script} does not exist yet`,
    };
  }
  const t0 = Date.now();
  const args = [path, '--json', ...(opts.quick ? ['--quick'] : [])];
  return new Promise((resolve) => {
    const [cmd, argv] = pinnedArgv(CORES.all, [NODE, ...args]);
    const child = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: join(benchDir, '..'),
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < 8 * 1024 * 1024) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-2000);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }, opts.timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      clearTimeout(timer);
      const durationS = (Date.now() - t0) / 1000;
      const records = parseJsonRecords(stdout);
      const tail = stderr.trim().split('\n').slice(-6).join('\n');
      const unknownQuick =
        opts.quick && /ERR_PARSE_ARGS_UNKNOWN_OPTION/.test(stderr) && /--quick/.test(stderr);
      const [status, detail]: [DelegatedResult['status'], string | undefined] = spawnError
        ? ['failed', spawnError.message]
        : timedOut
          ? ['timeout', `killed after ${opts.timeoutMs / 1000} s. ${tail}`]
          : code !== 0 && unknownQuick
            ? ['skipped', 'does not accept --quick; it runs in the full suite']
            : code !== 0
              ? ['failed', `exit ${code ?? signal}. ${tail}`]
              : records.length === 0
                ? ['failed', `exit 0 but no JSON records on stdout. ${tail}`]
                : ['ok', undefined];
      resolve({ script, status, durationS, records, ...(detail === undefined ? {} : { detail }) });
    };
    child.on('error', (err) => finish(null, null, err));
    child.on('close', (code, signal) => finish(code, signal));
  });
}
