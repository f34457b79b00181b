/**
 * The shape of `results.json`: one record per scenario × concurrency, plus machine info, target
 * checks and what delegated scripts printed. Bump RESULTS_SCHEMA when a field changes meaning.
 */

export const RESULTS_SCHEMA = 'keybroker-bench/1';

/** Median and spread of one metric over the repeated runs of a record. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** First and third quartiles (equal to min/max when there are fewer than 4 runs). */
  readonly q1: number;
  readonly q3: number;
  readonly n: number;
}

/** What one measured window (one run) produced. */
export interface RunSample {
  /** Operations per second in the record's unit (req/s, items/s, MiB/s, ops/s). */
  readonly throughput: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  /** Server process CPU (user+system) over the window divided by operations; absent in-process. */
  readonly serverCpuUsPerOp?: number;
  /** Load generator (or in-process loop) CPU per operation. */
  readonly clientCpuUsPerOp: number;
  /** Server VmHWM after the window (peak RSS, reset before the window where the kernel allows). */
  readonly peakRssBytes?: number;
  readonly operations: number;
  readonly errors: number;
  readonly durationS: number;
}

/** Where a record's numbers come from. */
export type RecordKind = 'daemon' | 'ceiling-echo' | 'ceiling-in-process' | 'ceiling-pkcs11';

export interface ScenarioRecord {
  /** Stable name, e.g. `encrypt-1k`, `echo-1k`, `pkcs11-unwrap`. The compare key with concurrency. */
  readonly scenario: string;
  readonly kind: RecordKind;
  /** Chart group: records of one group share a panel (e.g. `1 KiB`). */
  readonly group: string;
  readonly description: string;
  readonly phase: string;
  readonly concurrency: number;
  readonly unit: string;
  /** Payload bytes per operation (per item for batches). */
  readonly payloadBytes: number;
  readonly runs: readonly RunSample[];
  readonly throughput: Spread;
  readonly p50Us: Spread;
  readonly p90Us: Spread;
  readonly p99Us: Spread;
  readonly serverCpuUsPerOp?: Spread;
  readonly clientCpuUsPerOp: Spread;
  readonly peakRssBytes?: Spread;
  /** The ceiling scenarios this record is read against (by scenario name). */
  readonly ceilingsOf?: { readonly echo?: string; readonly inProcess?: string; readonly pkcs11?: string };
  /** Throughput ratio to the ceilings named here, computed from the medians of the same run. */
  readonly ratios?: Readonly<Record<string, number>>;
  readonly notes?: string;
}

/** A target from the issues, evaluated on this run. */
export interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  /** undefined when an input is missing (the reason is in `measured`). */
  readonly pass: boolean | undefined;
}

/** A per-area script (hsm/hierarchy/pqc/audit) run as a child with --json. */
export interface DelegatedResult {
  readonly script: string;
  readonly status: 'ok' | 'missing' | 'failed' | 'timeout' | 'skipped';
  readonly durationS: number;
  /** Whatever JSON records the script printed, unmodified. */
  readonly records: readonly unknown[];
  /** Why it is missing or failed (last lines of stderr, never secrets: the scripts own their output). */
  readonly detail?: string;
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly kernel: string;
  readonly node: string;
  readonly openssl: string;
  readonly platform: string;
  /** Whether client and server were pinned to separate cores with taskset. */
  readonly pinned: boolean;
}

export interface ResultsFile {
  readonly schema: typeof RESULTS_SCHEMA;
  readonly mode: 'quick' | 'full';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationS: number;
  readonly git: { readonly revision: string; readonly dirty: boolean };
  readonly machine: MachineInfo;
  /** 1-minute load average when the run started and ended: other work on the machine shows here. */
  readonly loadAverage: { readonly atStart: number; readonly atEnd: number };
  /** The negotiated TLS 1.3 group towards each server, e.g. X25519MLKEM768. */
  readonly tls: Readonly<Record<string, string>>;
  readonly records: readonly ScenarioRecord[];
  readonly targets: readonly TargetCheck[];
  readonly delegated: readonly DelegatedResult[];
  /** Scenarios that were asked for but could not run here, with the reason. */
  readonly missing: readonly { readonly scenario: string; readonly reason: string }[];
  /** Scenarios re-measured later and folded in with --merge (when, at which revision, load). */
  readonly merged?: readonly {
    readonly scenarios: readonly string[];
    readonly startedAt: string;
    readonly git: { readonly revision: string; readonly dirty: boolean };
    readonly loadAverage: { readonly atStart: number; readonly atEnd: number };
  }[];
}
