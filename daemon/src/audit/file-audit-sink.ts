/**
 * The audit file sink: an append-only, hash-chained, durably written JSON-lines file with group
 * commit (O_DSYNC writes, or write + fsync when the file cannot promise durable writes).
 *
 * `append` resolves only after its record's line is written and fsynced. Records arriving while a
 * write+fsync runs wait and go together into the next one, so one fsync covers many records.
 * Fail-closed: a write or fsync error rejects every pending append and every later one until a
 * retry probe has cut the file back to its last durable size and written a note saying what
 * happened. Chain state (seq, hash) only moves forward once a batch is durable.
 *
 * With a head store, every signed checkpoint is pinned outside the log, a checkpoint is written
 * at open and at a clean close, and open refuses a log that was cut or extended while stopped
 * (audit-head.ts). The active file is rotated by size or age into segments `<path>.<first seq>`;
 * the chain runs on across them, and each closed segment ends with a signed checkpoint.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KbError } from '../errors.ts';
import type { AuditPosition, AuditRecordInput, AuditSink } from './audit-sink.ts';
import { auditBatch, resumeNote } from './audit-batch.ts';
import { openAuditFile, syncDir } from './audit-file.ts';
import type { AuditFile } from './audit-file.ts';
import { lockAuditFile } from './audit-file-lock.ts';
import type { ChainTail } from './audit-file-tail.ts';
import { openChain } from './audit-chain-open.ts';
import type { OpenedChain } from './audit-chain-open.ts';
import type { PinnedHead } from './audit-head.ts';
import { segmentPath } from './audit-reader.ts';
import { FIELD_LIMITS, cleanText, recordFromInput } from './audit-record.ts';
import type { UnsequencedEntry } from './audit-record.ts';
import { keyIdOf } from './checkpoint.ts';
import { checkpointEntry } from './checkpoint-entry.ts';
import type { AuditSinkStats, FileAuditSinkOptions } from './file-audit-sink-options.ts';

interface Pending {
  readonly entry: UnsequencedEntry;
  readonly resolve: (p: AuditPosition) => void;
  readonly reject: (e: unknown) => void;
}

export class FileAuditSink implements AuditSink {
  readonly #o: FileAuditSinkOptions;
  readonly #now: () => number;
  readonly #keyId: string | undefined;
  #file: AuditFile;
  #seq: number;
  #hash: Buffer;
  #size: number;
  #sinceCheckpoint: number;
  #lastCheckpointAt: number;
  #checkpointRetryAt = 0;
  #forceCheckpoint = false;
  #queue: Pending[] = [];
  #checkpointWaiters: { resolve: (p: AuditPosition) => void; reject: (e: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;
  #failure: string | undefined;
  #checkpointError: string | undefined;
  #probe: NodeJS.Timeout | undefined;
  #recovering: Promise<boolean> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #unlock: () => void = () => undefined;
  /** Seq of the active file's first entry, and when it was written (rotation). */
  #segmentStart: number;
  #segmentStartedAt: number | undefined;
  /** The active file was closed by a rotation that failed before a new one was open. */
  #reopen = false;
  #stats = {
    records: 0,
    batches: 0,
    checkpoints: 0,
    failures: 0,
    rotations: 0,
    lastBatchSize: 0,
    lastCommitMs: 0,
  };

  private constructor(o: FileAuditSinkOptions, file: AuditFile, chain: OpenedChain) {
    const { tail } = chain;
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#keyId = o.signer ? keyIdOf(o.signer.publicKeyPem) : undefined;
    this.#file = file;
    this.#seq = tail.seq;
    this.#hash = tail.hash;
    this.#size = tail.size;
    this.#sinceCheckpoint = 0;
    this.#lastCheckpointAt = this.#now();
    this.#segmentStart = chain.segmentStart;
    this.#segmentStartedAt = chain.segmentStartedAt;
  }

  /**
   * Open (or create) the audit file, check its tail, cut off a torn last line (recording a note),
   * and continue the chain.
   */
  static async open(o: FileAuditSinkOptions): Promise<FileAuditSink> {
    await mkdir(dirname(o.path), { recursive: true, mode: 0o700 });
    const unlock = lockAuditFile(o.path);
    const headStore = o.signer ? o.headStore : undefined;
    let chain;
    let file;
    try {
      chain = await openChain(o.path, headStore);
      file = await (o.openFile ?? openAuditFile)(o.path);
    } catch (err) {
      unlock();
      throw err;
    }
    const sink = new FileAuditSink(o, file, chain);
    sink.#unlock = unlock;
    sink.#sinceCheckpoint = chain.tail.sinceCheckpoint;
    try {
      await sink.#prepare(chain.tail);
      if (chain.pin !== undefined) sink.#pin(chain.pin);
      if (chain.note !== undefined) {
        o.onEvent?.({ kind: 'head', detail: chain.note });
        await sink.#enqueue({
          type: 'note',
          timeMs: sink.#now(),
          note: cleanText(chain.note, FIELD_LIMITS.note),
        });
      }
      // Sign the chain head at every start: whatever came before is covered from now on.
      if (o.signer && sink.#seq > 0) {
        await sink.checkpointNow().catch((err: unknown) => {
          o.onEvent?.({ kind: 'checkpoint-failed', detail: (err as Error).message });
        });
      }
    } catch (err) {
      await sink.close();
      throw err;
    }
    if (o.signer) {
      const every = o.checkpointIntervalMs ?? 60_000;
      sink.#timer = setInterval(() => sink.#maybeTimedCheckpoint(), Math.max(10, Math.min(every, 1000)));
      sink.#timer.unref();
    }
    return sink;
  }

  /** Save the pin; a registry that cannot be written only weakens the next open's check. */
  #pin(head: PinnedHead): void {
    try {
      this.#o.headStore?.save(head);
    } catch (err) {
      this.#o.onEvent?.({ kind: 'pin-failed', detail: (err as Error).message.slice(0, 200) });
    }
  }

  /** Cut a torn tail (and note it), or make a new file's directory entry durable. */
  async #prepare(tail: ChainTail): Promise<void> {
    if (tail.torn) {
      const digest = createHash('sha256').update(tail.torn.bytes).digest('hex');
      const note = `torn tail discarded on open: ${tail.torn.bytes.length} bytes at offset ${tail.torn.offset} (sha256 ${digest})`;
      await this.#file.truncate(tail.size);
      this.#o.onEvent?.({ kind: 'torn-tail', detail: note });
      await this.#enqueue({ type: 'note', timeMs: this.#now(), note });
    } else if (tail.size === 0) {
      // A new file: make its directory entry durable too, or a crash could lose the whole file.
      await syncDir(dirname(this.#o.path));
    }
  }

  append(record: AuditRecordInput): Promise<AuditPosition> {
    let entry: UnsequencedEntry;
    try {
      entry = recordFromInput(record);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#enqueue(entry);
  }

  /** Write a signed checkpoint now (tests, shutdown, export); resolves with its position. */
  checkpointNow(): Promise<AuditPosition> {
    if (!this.#o.signer) return Promise.reject(new KbError('FAILED_PRECONDITION', 'no checkpoint signer'));
    if (this.#closed) return Promise.reject(new KbError('SHUTTING_DOWN', 'audit sink closed'));
    if (this.#failure !== undefined) return Promise.reject(new KbError('AUDIT_UNAVAILABLE', this.#failure));
    this.#forceCheckpoint = true;
    return new Promise<AuditPosition>((resolve, reject) => {
      this.#checkpointWaiters.push({ resolve, reject });
      this.#kick();
    });
  }

  /** Counters for metrics: durable records, write+fsync batches, checkpoints, failures. */
  stats(): AuditSinkStats {
    return { ...this.#stats, pending: this.#queue.length, healthy: this.#failure === undefined };
  }

  head(): AuditPosition {
    return { seq: this.#seq, hash: this.#hash.toString('hex') };
  }

  health(): { readonly ok: boolean; readonly reason?: string } {
    if (this.#closed) return { ok: false, reason: 'audit sink closed' };
    if (this.#failure !== undefined) return { ok: false, reason: this.#failure };
    if (this.#checkpointError !== undefined)
      return { ok: true, reason: `checkpoint: ${this.#checkpointError}` };
    return { ok: true };
  }

  /** Try to recover now instead of waiting for the next probe (tests, operator command). */
  async probeNow(): Promise<boolean> {
    await this.#flushing;
    return this.#recoverOnce();
  }

  #recoverOnce(): Promise<boolean> {
    this.#recovering ??= this.#recover().finally(() => {
      this.#recovering = undefined;
    });
    return this.#recovering;
  }

  /**
   * Flush, write a final checkpoint when records were added since the last one, pin it as the
   * clean end of the log, and close.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#o.signer && this.#failure === undefined && this.#sinceCheckpoint > 0) {
      await this.checkpointNow().catch((err: unknown) => {
        this.#o.onEvent?.({ kind: 'checkpoint-failed', detail: (err as Error).message });
      });
    }
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#probe);
    await this.#flushing;
    for (const p of this.#queue.splice(0)) p.reject(new KbError('SHUTTING_DOWN'));
    // Only a log that ends in its signed checkpoint is pinned as stopped; otherwise the next
    // open treats what follows the last pin as a crash's unsigned tail.
    if (this.#o.signer && this.#failure === undefined && this.#sinceCheckpoint === 0) {
      this.#pin({ ...this.head(), state: 'stopped' });
    }
    try {
      if (!this.#reopen) await this.#file.close();
    } finally {
      this.#unlock();
    }
  }

  #enqueue(entry: UnsequencedEntry): Promise<AuditPosition> {
    if (this.#closed) return Promise.reject(new KbError('SHUTTING_DOWN', 'audit sink closed'));
    if (this.#failure !== undefined) return Promise.reject(new KbError('AUDIT_UNAVAILABLE', this.#failure));
    if (this.#queue.length >= (this.#o.maxPending ?? 100_000)) {
      // Memory stays bounded when the disk cannot keep up; the caller's request fails closed.
      return Promise.reject(new KbError('AUDIT_UNAVAILABLE', 'audit backlog full'));
    }
    return new Promise<AuditPosition>((resolve, reject) => {
      this.#queue.push({ entry, resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    // Start a flush at the end of this tick, so appends made in the same tick share it.
    if (this.#flushing === undefined) this.#flushing = Promise.resolve().then(() => this.#flushLoop());
  }

  async #flushLoop(): Promise<void> {
    try {
      while ((this.#queue.length > 0 || this.#forceCheckpoint) && this.#failure === undefined) {
        if (this.#rotationDue()) {
          await this.#rotate();
          continue;
        }
        await this.#linger();
        const batch = this.#queue.splice(0, this.#o.maxBatch ?? 8192);
        await this.#writeBatch(batch);
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Group commit that actually groups: a write+fsync costs the process ~200 µs of CPU whatever
   * it carries, and starting it right after the first record of a busy event-loop turn left the
   * other calls of that turn for the next one. So wait event-loop turns while they add records
   * (calls already read from the sockets finish and append), up to maxLingerMs; a turn that adds
   * nothing (a lone call, an idle loop) ends the wait at once.
   */
  async #linger(): Promise<void> {
    const maxMs = this.#o.maxLingerMs ?? 2;
    if (maxMs <= 0) return;
    const maxBatch = this.#o.maxBatch ?? 8192;
    const until = performance.now() + maxMs;
    let seen = -1;
    while (this.#queue.length !== seen && this.#queue.length < maxBatch && performance.now() < until) {
      seen = this.#queue.length;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    let since = this.#sinceCheckpoint;
    const checkpoint = await this.#checkpointFor(this.#seq, this.#hash);
    const entries = batch.map((p) => p.entry);
    if (checkpoint) entries.unshift(checkpoint);
    if (entries.length === 0) return;
    const { data, positions, seq, hash } = auditBatch(this.#seq, this.#hash, entries);
    const cpPos = checkpoint ? positions.shift() : undefined;
    if (checkpoint) since = 0;
    since += batch.length;
    const t0 = performance.now();
    try {
      let off = 0;
      while (off < data.length) off += await this.#file.write(data.subarray(off));
      if (this.#file.durableWrites !== true) await this.#file.sync();
    } catch (err) {
      this.#fail(err, batch);
      return;
    }
    this.#stats.batches += 1;
    this.#stats.records += batch.length;
    this.#stats.checkpoints += checkpoint ? 1 : 0;
    this.#stats.lastBatchSize = entries.length;
    this.#stats.lastCommitMs = performance.now() - t0;
    this.#seq = seq;
    this.#hash = hash;
    this.#size += data.length;
    this.#sinceCheckpoint = since;
    if (checkpoint) this.#lastCheckpointAt = checkpoint.timeMs;
    this.#segmentStartedAt ??= this.#now();
    if (cpPos) this.#pin({ ...cpPos, state: 'running' });
    batch.forEach((p, i) => p.resolve(positions[i] as AuditPosition));
    if (cpPos) for (const w of this.#checkpointWaiters.splice(0)) w.resolve(cpPos);
  }

  /** A signed checkpoint over (seq, hash) when one is due, else undefined. */
  async #checkpointFor(seq: number, hash: Buffer): Promise<UnsequencedEntry | undefined> {
    const forced = this.#forceCheckpoint;
    this.#forceCheckpoint = false; // cleared first: a failed forced checkpoint must not loop
    const signer = this.#o.signer;
    if (!signer || this.#keyId === undefined || seq === 0) {
      if (this.#checkpointWaiters.length > 0) {
        const e = new KbError('FAILED_PRECONDITION', 'nothing to checkpoint');
        for (const w of this.#checkpointWaiters.splice(0)) w.reject(e);
      }
      return undefined;
    }
    const now = this.#now();
    const due =
      forced ||
      this.#sinceCheckpoint >= (this.#o.checkpointEvery ?? 10_000) ||
      (this.#sinceCheckpoint > 0 && now - this.#lastCheckpointAt >= (this.#o.checkpointIntervalMs ?? 60_000));
    if (!due || (!forced && now < this.#checkpointRetryAt)) return undefined;
    try {
      const entry = await checkpointEntry(signer, this.#keyId, seq, hash, now);
      this.#checkpointError = undefined;
      return entry;
    } catch (err) {
      // Checkpoints add evidence but records stay chained without them: keep serving, say so in
      // health, and retry after the probe interval rather than on every batch.
      this.#checkpointError = `signing failed: ${(err as Error).message}`.slice(0, 200);
      this.#checkpointRetryAt = now + (this.#o.retryIntervalMs ?? 1000);
      this.#o.onEvent?.({ kind: 'checkpoint-failed', detail: this.#checkpointError });
      const e = new KbError('INTERNAL', 'checkpoint signing failed', { cause: err });
      for (const w of this.#checkpointWaiters.splice(0)) w.reject(e);
      return undefined;
    }
  }

  #rotationDue(): boolean {
    if (this.#size === 0) return false;
    const bytes = this.#o.rotateBytes ?? 0;
    const age = this.#o.rotateIntervalMs ?? 0;
    return (
      (bytes > 0 && this.#size >= bytes) ||
      (age > 0 && this.#segmentStartedAt !== undefined && this.#now() - this.#segmentStartedAt >= age)
    );
  }

  /**
   * Close the active file with a signed checkpoint, rename it to `<path>.<first seq>` and start
   * a new one; the next entry links to the last hash of the closed segment.
   */
  async #rotate(): Promise<void> {
    if (this.#o.signer && this.#sinceCheckpoint > 0) {
      this.#forceCheckpoint = true;
      await this.#writeBatch([]);
      if (this.#failure !== undefined) return;
    }
    const segment = segmentPath(this.#o.path, this.#segmentStart);
    try {
      this.#reopen = true;
      await this.#file.close();
      await rename(this.#o.path, segment);
      this.#size = 0;
      this.#segmentStart = this.#seq + 1;
      this.#segmentStartedAt = undefined;
      this.#file = await (this.#o.openFile ?? openAuditFile)(this.#o.path);
      this.#reopen = false;
      // Both names durable: a crash must find the segment and the new file, not lose either.
      await syncDir(dirname(this.#o.path));
    } catch (err) {
      this.#fail(err, []);
      return;
    }
    this.#stats.rotations += 1;
    this.#o.onEvent?.({ kind: 'rotated', detail: `segment ${segment} closed at seq ${this.#seq}` });
  }

  #maybeTimedCheckpoint(): void {
    if (this.#closed || this.#failure !== undefined || this.#sinceCheckpoint === 0) return;
    if (this.#now() - this.#lastCheckpointAt < (this.#o.checkpointIntervalMs ?? 60_000)) return;
    this.#forceCheckpoint = true;
    this.#kick();
  }

  #fail(err: unknown, batch: Pending[]): void {
    this.#stats.failures += 1;
    const code = (err as NodeJS.ErrnoException).code;
    this.#failure = `audit write failed (${code ?? 'error'}): ${(err as Error).message}`.slice(0, 300);
    this.#o.onEvent?.({ kind: 'failed', detail: this.#failure });
    const e = new KbError('AUDIT_UNAVAILABLE', this.#failure, { cause: err });
    for (const p of batch) p.reject(e);
    for (const p of this.#queue.splice(0)) p.reject(e);
    for (const w of this.#checkpointWaiters.splice(0)) w.reject(e);
    this.#forceCheckpoint = false;
    this.#scheduleProbe();
  }

  #scheduleProbe(): void {
    if (this.#closed || this.#probe !== undefined) return;
    this.#probe = setTimeout(() => {
      this.#probe = undefined;
      void this.#recoverOnce().then((ok) => {
        if (!ok) this.#scheduleProbe();
      });
    }, this.#o.retryIntervalMs ?? 1000);
    this.#probe.unref();
  }

  /**
   * Cut the file back to its last durable size (dropping any partial batch), then write and fsync
   * a note recording the outage. Healthy again only if all of that succeeds.
   */
  async #recover(): Promise<boolean> {
    if (this.#failure === undefined) return true;
    if (this.#closed) return false;
    const reason = this.#failure;
    const { entry, hash, data } = resumeNote(this.#seq, this.#hash, reason, this.#now());
    try {
      if (this.#reopen) {
        this.#file = await (this.#o.openFile ?? openAuditFile)(this.#o.path);
        this.#reopen = false;
      }
      await this.#file.truncate(this.#size);
      let off = 0;
      while (off < data.length) off += await this.#file.write(data.subarray(off));
      await this.#file.sync();
    } catch (err) {
      this.#failure =
        `audit write failed (${(err as NodeJS.ErrnoException).code ?? 'error'}): ${(err as Error).message}`.slice(
          0,
          300,
        );
      return false;
    }
    this.#seq = entry.seq;
    this.#hash = hash;
    this.#size += data.length;
    this.#sinceCheckpoint += 1;
    this.#failure = undefined;
    this.#o.onEvent?.({ kind: 'recovered', detail: entry.note });
    return true;
  }
}
