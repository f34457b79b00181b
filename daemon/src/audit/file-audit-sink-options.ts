/** What a FileAuditSink is opened with, and what its stats() report. */
import type { AuditFileOpener } from './audit-file.ts';
import type { AuditHeadStore } from './audit-head.ts';
import type { CheckpointSigner } from './checkpoint.ts';

export interface FileAuditSinkOptions {
  readonly path: string;
  /** Signs checkpoints; without one, no checkpoints are written. */
  readonly signer?: CheckpointSigner;
  /** Checkpoint after this many entries (default 10,000) ... */
  readonly checkpointEvery?: number;
  /** ... or this long after the last one if anything was appended since (default 60 s). */
  readonly checkpointIntervalMs?: number;
  /** How often a failed sink probes the disk again (default 1 s). */
  readonly retryIntervalMs?: number;
  /** Most records per write+fsync (default 8,192). */
  readonly maxBatch?: number;
  /** Most appends waiting for the disk (default 100,000); beyond, appends fail (AUDIT_UNAVAILABLE). */
  readonly maxPending?: number;
  /**
   * Longest a batch waits for more records before its write+fsync (default 2 ms; 0 = never): it
   * waits only while event-loop turns keep adding records, so a lone call does not wait.
   */
  readonly maxLingerMs?: number;
  /**
   * Pins the last signed checkpoint outside the log (the registry) and checks it at open; used
   * only with a signer.
   */
  readonly headStore?: AuditHeadStore;
  /** Rotate the active file into a segment once it holds this many bytes (0 or absent: never). */
  readonly rotateBytes?: number;
  /** ... or once its first entry is this old (0 or absent: never). */
  readonly rotateIntervalMs?: number;
  readonly now?: () => number;
  readonly openFile?: AuditFileOpener;
  /** Told about failures, recoveries, torn tails and checkpoint errors (for the log). */
  readonly onEvent?: (event: { kind: string; detail: string }) => void;
}

/** What `FileAuditSink.stats()` reports (counters since open). */
export interface AuditSinkStats {
  readonly records: number;
  readonly batches: number;
  readonly checkpoints: number;
  readonly failures: number;
  readonly rotations: number;
  /** Entries in the last write+fsync, and how long it took. */
  readonly lastBatchSize: number;
  readonly lastCommitMs: number;
  readonly pending: number;
  readonly healthy: boolean;
}
