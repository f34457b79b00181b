/**
 * Helpers for the systemd tests: run systemd/install.sh into a temporary DESTDIR, and drive
 * `systemd-analyze verify` / `systemd-analyze security --offline=true` on the installed unit.
 * None of this needs a running systemd; see service.test.ts for the part that does.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const SYSTEMD_DIR = join(REPO_ROOT, 'systemd');
export const DROP_IN_DIR = join(SYSTEMD_DIR, 'drop-ins');
/** The exposure ceiling the issue asks for (systemd-analyze's 0.0-10.0 scale). */
export const MAX_EXPOSURE = 2.0;

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (bounded by `timeoutMs`), never throwing on a non-zero exit. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
  };
}

/** Describes a run for an assertion message: what was called and what came back. */
export function describeRun(what: string, r: RunResult): string {
  return `${what} exited ${r.status}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

/** True when `name` is on PATH. */
export function hasTool(name: string): boolean {
  return run('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** systemd's major version from `systemd-analyze --version` (0 when absent). */
export function systemdVersion(): number {
  const m = /^systemd (\d+)/.exec(run('systemd-analyze', ['--version']).stdout);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs systemd/install.sh with DESTDIR (and optional PREFIX / extra flags); asserts success. */
export function installInto(
  destdir: string,
  opts: { prefix?: string; args?: readonly string[] } = {},
): RunResult {
  const env: NodeJS.ProcessEnv = { ...process.env, DESTDIR: destdir };
  if (opts.prefix !== undefined) env.PREFIX = opts.prefix;
  const r = run('bash', [join(SYSTEMD_DIR, 'install.sh'), ...(opts.args ?? [])], { env });
  if (r.status !== 0) throw new Error(describeRun(`DESTDIR=${destdir} systemd/install.sh`, r));
  return r;
}

/** The shipped drop-in file names (systemd/drop-ins/*.conf). */
export function dropInNames(): string[] {
  return readdirSync(DROP_IN_DIR)
    .filter((f) => f.endsWith('.conf'))
    .sort();
}

/** A drop-in with its commented-out directives (`#Key=value`) switched on: the optional variant. */
export function uncommented(text: string): string {
  return text.replace(/^#([A-Z][A-Za-z]+=)/gm, '$1');
}

/**
 * Copies the installed unit into a scratch directory with its absolute app paths pointing into
 * DESTDIR (so verify finds the real installed runtime), plus the given drop-ins. systemd-analyze
 * picks up `<dir>/keybroker.service.d/*.conf` for a unit named by path.
 */
export function unitForVerify(destdir: string, dropIns: ReadonlyMap<string, string> = new Map()): string {
  const dir = mkdtempSync(join(tmpdir(), 'kb-unit-'));
  const unit = readFileSync(join(destdir, 'usr/lib/systemd/system/keybroker.service'), 'utf8');
  writeFileSync(
    join(dir, 'keybroker.service'),
    unit.replaceAll('/usr/lib/keybroker', `${destdir}/usr/lib/keybroker`),
  );
  if (dropIns.size > 0) {
    mkdirSync(join(dir, 'keybroker.service.d'));
    for (const [name, text] of dropIns) writeFileSync(join(dir, 'keybroker.service.d', name), text);
  }
  return join(dir, 'keybroker.service');
}

export interface SecurityReport {
  /** Overall exposure, 0.0 (locked down) to 10.0 (exposed). */
  readonly score: number;
  /** Checks that are not fully satisfied, with their exposure contribution. */
  readonly exposed: readonly { readonly name: string; readonly exposure: number }[];
  readonly raw: RunResult;
}

/** `systemd-analyze security --offline=true` on a unit file, score parsed from its last line. */
export function securityOf(unitPath: string, extra: readonly string[] = []): SecurityReport {
  const raw = run('systemd-analyze', ['security', '--offline=true', '--no-pager', ...extra, unitPath]);
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(raw.stdout);
  if (m?.[1] === undefined) throw new Error(describeRun(`systemd-analyze security ${unitPath}`, raw));
  const exposed: { name: string; exposure: number }[] = [];
  for (const line of raw.stdout.split('\n')) {
    const x = /^✗ (\S+)\s.*\s(\d+\.\d+)\s*$/.exec(line);
    if (x?.[1] !== undefined && x[2] !== undefined) exposed.push({ name: x[1], exposure: Number(x[2]) });
  }
  return { score: Number(m[1]), exposed, raw };
}
