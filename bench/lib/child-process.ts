/**
 * Child processes of the harness: servers pinned to one core, the load generator to another
 * (taskset, when present and the machine has ≥ 2 cores), line-oriented JSON on stdout, a tail of
 * stderr kept for error messages, and bounded waits everywhere.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';

const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;

/** CPU sets: servers on the first core, load generators on the second (when there are two). */
export const CORES = {
  pinned: hasTaskset && cpus().length >= 2,
  server: '0',
  client: String(Math.min(1, cpus().length - 1)),
  /** Children that should use the whole machine (the per-area scripts) undo the runner's pin. */
  all: `0-${cpus().length - 1}`,
} as const;

/** The node binary running the harness (the pinned Node 24): children use the same one. */
export const NODE = process.execPath;

/** argv prefixed with `taskset -c CORE` when pinning is available (taskset execs, so pids match). */
export function pinnedArgv(core: string | undefined, argv: readonly string[]): [string, string[]] {
  if (core !== undefined && CORES.pinned) return ['taskset', ['-c', core, ...argv]];
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new Error('empty argv');
  return [cmd, rest];
}

/** Children still running, so an interrupted suite can stop them (see stopAllChildren). */
const live = new Set<JsonLineChild>();

/** SIGTERM every child the harness started and still runs; SIGKILL whatever is left after `graceMs`. */
export async function stopAllChildren(graceMs = 5000): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(graceMs)));
}

/** A running child with its stdout as JSON lines. */
export class JsonLineChild {
  readonly proc: ChildProcess;
  readonly name: string;
  private readonly lines: unknown[] = [];
  private waiters: (() => void)[] = [];
  private stderrTail = '';
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exitPromise: Promise<void>;

  constructor(
    name: string,
    argv: readonly string[],
    opts: { core?: string; env?: NodeJS.ProcessEnv; cwd?: string; stdout?: 'pipe' | 'ignore' | number },
  ) {
    this.name = name;
    const [cmd, args] = pinnedArgv(opts.core, argv);
    this.proc = spawn(cmd, args, {
      // A daemon's request log is not read by the harness: 'ignore' sends it to /dev/null.
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    if (this.proc.stdout)
      createInterface({ input: this.proc.stdout }).on('line', (line) => {
        const t = line.trim();
        if (!t.startsWith('{') && !t.startsWith('[')) return;
        try {
          this.lines.push(JSON.parse(t));
        } catch {
          // a log line that merely starts with '{' but is not JSON: keep it for diagnostics only
          this.stderrTail = (this.stderrTail + '\n[stdout] ' + t).slice(-4000);
        }
        this.wake();
      });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-4000);
    });
    live.add(this);
    this.exitPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        live.delete(this);
        this.exited = { code, signal };
        this.wake();
        resolve();
      });
      this.proc.on('error', (err) => {
        live.delete(this);
        this.stderrTail += `\nspawn error: ${err.message}`;
        this.exited = { code: -1, signal: null };
        this.wake();
        resolve();
      });
    });
  }

  get pid(): number {
    if (this.proc.pid === undefined) throw new Error(`${this.name}: not started (${this.stderr()})`);
    return this.proc.pid;
  }

  /** The last few KB of stderr, for error reports. */
  stderr(): string {
    return this.stderrTail.trim();
  }

  get exitCode(): number | null | undefined {
    return this.exited?.code;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait (bounded) for a JSON line matching `pred`; lines before it are consumed. */
  async waitFor<T>(pred: (v: unknown) => v is T, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.lines.length > 0) {
        const v = this.lines.shift();
        if (pred(v)) return v;
        const err = (v as { type?: string; message?: string } | undefined)?.type === 'error';
        if (err) throw new Error(`${this.name}: ${(v as { message: string }).message}`);
      }
      if (this.exited) {
        throw new Error(
          `${this.name} exited (${this.exited.code ?? this.exited.signal}) before ${what}: ${this.stderr()}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Wait for the process to exit (bounded); returns its exit code. */
  async waitExit(timeoutMs: number): Promise<number | null> {
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    await this.exitPromise;
    clearTimeout(t);
    return this.exited?.code ?? null;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    this.proc.kill('SIGTERM');
    await this.waitExit(graceMs);
  }
}

/** Type guard factory for `{event: name}` lines. */
export function isEvent<T extends { event: string }>(name: string): (v: unknown) => v is T {
  return (v: unknown): v is T =>
    typeof v === 'object' && v !== null && (v as { event?: unknown }).event === name;
}
