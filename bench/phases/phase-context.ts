/**
 * What every phase shares: the options, a progress log, the collected runs, the "missing"
 * list, the time budget, and `runLoad`, which starts one load-generator process for one
 * scenario and turns its lines into runs.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORES, JsonLineChild, NODE } from '../lib/child-process.ts';
import type { RunSample } from '../lib/result-types.ts';
import type { ClientTls, LoadSpec, RunLine } from '../load/load-spec.ts';
import type { Scenario } from '../scenarios.ts';

export interface SuiteOptions {
  readonly repoRoot: string;
  readonly quick: boolean;
  readonly only: readonly string[] | undefined;
  /** Scratch space for this run (tokens, data dirs, specs); removed unless kept. */
  readonly workDir: string;
  /** Repeats per record (3 full, 1 quick unless overridden). */
  readonly runs: number;
  /** Wall-clock budget for the whole suite; phases past it are skipped and reported missing. */
  readonly budgetMs: number;
  readonly log: (msg: string) => void;
}

/** Load-window timing for the mode. */
export interface Timing {
  readonly warmupS: number;
  readonly durationS: number;
  readonly minCalls: number;
  readonly maxCalls: number;
}

export class PhaseContext {
  readonly o: SuiteOptions;
  readonly startedMs = Date.now();
  /** scenario -> concurrency -> runs, plus notes per scenario. */
  readonly runs = new Map<string, Map<number, RunSample[]>>();
  readonly notes = new Map<string, string[]>();
  readonly missing: { scenario: string; reason: string }[] = [];
  readonly tls: Record<string, string> = {};
  #specN = 0;

  constructor(o: SuiteOptions) {
    this.o = o;
  }

  get timing(): Timing {
    return this.o.quick
      ? { warmupS: 0.25, durationS: 0.75, minCalls: 20, maxCalls: 300_000 }
      : { warmupS: 0.5, durationS: 2, minCalls: 50, maxCalls: 600_000 };
  }

  concurrencies(s: Scenario): readonly number[] {
    return this.o.quick ? s.concurrency.quick : s.concurrency.full;
  }

  overBudget(): boolean {
    return Date.now() - this.startedMs > this.o.budgetMs;
  }

  elapsed(): string {
    const s = Math.round((Date.now() - this.startedMs) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  }

  log(msg: string): void {
    this.o.log(`[bench ${this.elapsed()}] ${msg}`);
  }

  addRun(scenario: string, concurrency: number, sample: RunSample): void {
    let byC = this.runs.get(scenario);
    if (!byC) this.runs.set(scenario, (byC = new Map()));
    const list = byC.get(concurrency) ?? [];
    list.push(sample);
    byC.set(concurrency, list);
  }

  note(scenario: string, text: string): void {
    const list = this.notes.get(scenario) ?? [];
    list.push(text);
    this.notes.set(scenario, list);
  }

  markMissing(scenarios: readonly Scenario[] | readonly string[], reason: string): void {
    for (const s of scenarios) {
      const name = typeof s === 'string' ? s : s.name;
      this.missing.push({ scenario: name, reason });
      this.log(`${name}: not measured (${reason})`);
    }
  }

  /** Write a JSON spec file into the work dir for a child process. */
  writeSpec(prefix: string, spec: object): string {
    const path = join(this.o.workDir, `${prefix}-${++this.#specN}.json`);
    writeFileSync(path, JSON.stringify(spec));
    return path;
  }

  /**
   * One load-generator process (pinned to the client core) for `s` against 127.0.0.1:port.
   * Records its runs; on failure records the scenario as missing and returns false.
   */
  async runLoad(
    s: Scenario,
    target: { port: number; serverPid: number; tls: ClientTls; protoDir?: string; maxChannels?: number },
    extra: Partial<LoadSpec> = {},
  ): Promise<boolean> {
    if (!s.op) throw new Error(`${s.name} has no load op`);
    if (this.overBudget()) {
      this.markMissing([s], 'suite time budget exhausted');
      return false;
    }
    const t = this.timing;
    const stream = s.unit === 'MiB/s';
    const spec: LoadSpec = {
      target: `127.0.0.1:${target.port}`,
      tls: target.tls,
      op: s.op,
      concurrencies: this.concurrencies(s),
      runs: this.o.runs,
      warmupS: stream ? 0 : t.warmupS,
      durationS: stream ? 0 : t.durationS,
      minCalls: stream ? (this.o.quick ? 1 : 2) : t.minCalls,
      // One 64 MiB stream warms a stream path up; more would only cost time.
      ...(stream ? { warmupCalls: 1 } : {}),
      maxCalls: stream ? 16 : t.maxCalls,
      maxChannels: target.maxChannels ?? 4,
      serverPid: target.serverPid,
      callTimeoutMs: stream ? 300_000 : 60_000,
      ...(target.protoDir === undefined ? {} : { protoDir: target.protoDir }),
      ...extra,
    };
    const child = new JsonLineChild(
      `load ${s.name}`,
      [NODE, join(this.o.repoRoot, 'bench/load/load-generator.ts'), this.writeSpec(s.name, spec)],
      {
        core: CORES.client,
      },
    );
    const isRun = (v: unknown): v is RunLine => (v as RunLine | undefined)?.type === 'run';
    // With an alternate ceiling, each run prints a second line under the ceiling's name.
    const expected = spec.concurrencies.length * spec.runs * (spec.alternate === undefined ? 1 : 2);
    try {
      for (let i = 0; i < expected; i++) {
        const line = await child.waitFor(isRun, 600_000, `run line ${i + 1} of ${s.name}`);
        const name = line.scenario ?? s.name;
        this.addRun(name, line.concurrency, line.sample);
        if (line.connections !== undefined && i === expected - 1) {
          this.note(
            name,
            `${line.connections.rotations} reconnections as random tenants, ${line.connections.identitiesUsed} distinct tenant identities`,
          );
        }
        if (line.firstError !== undefined)
          this.note(name, `c=${line.concurrency}: ${line.sample.errors} errors, first: ${line.firstError}`);
        this.log(
          `${name} c=${line.concurrency} run ${line.run + 1}/${spec.runs}: ${Math.round(line.sample.throughput).toLocaleString('en-US')} ${line.scenario === undefined ? s.unit : 'req/s'}, p50 ${Math.round(line.sample.p50Us)} µs, server ${line.sample.serverCpuUsPerOp?.toFixed(1) ?? '?'} µs/op`,
        );
      }
      await child.waitExit(30_000);
      return true;
    } catch (err) {
      await child.stop(2000);
      this.markMissing([s], `load generator failed: ${(err as Error).message.slice(0, 300)}`);
      return false;
    }
  }
}
