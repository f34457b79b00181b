/**
 * The HSM worker lane: one worker thread that runs batches of short jobs (AES-GCM encrypt and
 * decrypt, ECDSA P-256 sign) with SYNC Cryptoki calls on its own session (hsm-worker-thread.ts).
 *
 * Why: with C_*Async each call costs a sync C_*Init on the event loop, a hop to the libuv pool
 * and a completion callback; around SoftHSM's one symmetric mutex that capped pooled AES-GCM 1 KiB
 * at 0.49-0.65x of a direct sync loop. Here requests that arrive while a batch runs form the next
 * batch (one transferred ArrayBuffer per message, up to 64 jobs / 1 MiB, two batches in flight),
 * so under load the worker runs back-to-back sync calls like the direct loop. Measured with
 * bench/hsm-bench.ts, four runs on the shared 2-core box (load average 5.8-6.7; two under
 * `nice -n -10`), best concurrency vs direct: GCM 1 KiB 0.71-1.12x (the C_EncryptAsync path in
 * the same runs 0.38-0.48x), ECDSA 0.51-1.26x (C_SignAsync 0.31-0.70x), event-loop p99 5-12 ms
 * (the direct loop stalls it 160+ ms). The rule "never a sync call on the event loop"
 * holds: the sync calls run on this thread, never on the loop. One thread is enough: SoftHSM
 * serialises symmetric work per process (PLATFORM.md), and child processes would add IPC and
 * lifecycle for no gain here. Wrap/unwrap (scratch objects, key bytes) and RSA-PSS
 * (milliseconds; would stall the queue) keep C_*Async. `Pkcs11HsmOptions.workerThread: false`
 * restores C_*Async for all.
 *
 * Contract with Pkcs11Connection: every job runs inside `withWorker` (counted as in flight on the
 * link, so a reconnect drains it before C_Finalize); `closeSessions()` is awaited before the module
 * is finalised, and the next job re-opens the worker's session on the new generation's slot.
 */
import { Worker } from 'node:worker_threads';
import { KbError } from '../errors.ts';
import type { HsmLogger } from './hsm-logger.ts';
import { Pkcs11Error, deviceRemoved } from './pkcs11-error.ts';

/** The worker-thread lane of one connection generation, lent by Pkcs11Connection.withWorker. */
export interface WorkerLane {
  readonly gen: number;
  run(job: HsmJob): Promise<Uint8Array>;
}

/** What the worker runs; the index in JOB_OPS is the op's code in a packed batch. */
export type JobOp = 'encrypt' | 'decrypt' | 'sign-ecdsa';
export const JOB_OPS: readonly JobOp[] = ['encrypt', 'decrypt', 'sign-ecdsa'];

/**
 * One operation: AES-GCM (`data` is plaintext, or ciphertext ‖ tag) or CKM_ECDSA over a digest
 * (`data`; `iv` and `aad` empty).
 */
export interface HsmJob {
  readonly op: JobOp;
  /** The AES key's object handle (valid in every thread of the process). */
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
  readonly aad: Uint8Array;
  readonly data: Uint8Array;
}

/** A failed job as it crosses the thread boundary: a typed Cryptoki failure, or another error. */
export type JobFailure =
  | { readonly i: number; readonly ckr: string; readonly code: number; readonly fn: string }
  | { readonly i: number; readonly ckr?: undefined; readonly message: string };

/**
 * Messages to the worker thread. A batch travels as ONE transferred ArrayBuffer (structured
 * cloning an object per job cost more than the Cryptoki call): per job a 20-byte header
 * (op code = index in JOB_OPS, then key, iv, aad and data lengths, as u32 LE), then those bytes.
 */
export type WorkerRequest =
  | {
      readonly t: 'batch';
      readonly id: number;
      readonly gen: number;
      readonly slot: Uint8Array;
      readonly n: number;
      readonly buf: ArrayBuffer;
    }
  | { readonly t: 'close'; readonly id: number };

/**
 * Messages from the worker thread, in request order. `buf` (transferred) starts with n pairs of
 * u32 LE (offset, length) of each job's output inside it; failed jobs are listed in `failures`.
 */
export type WorkerReply =
  | {
      readonly t: 'done';
      readonly id: number;
      readonly buf: ArrayBuffer;
      readonly failures: readonly JobFailure[];
    }
  | { readonly t: 'closed'; readonly id: number };

/** Bytes of a packed job's header (five u32). */
export const JOB_HEADER = 20;

/** What the worker thread is started with (workerData). */
export interface WorkerInit {
  readonly modulePath: string;
}

interface Pending {
  readonly job: HsmJob;
  readonly gen: number;
  readonly slot: Uint8Array;
  resolve(out: Uint8Array): void;
  reject(err: unknown): void;
}

/** Jobs per message: bounds one batch's latency (~40 us per 1 KiB job on SoftHSM) and size. */
const MAX_BATCH = 64;
/** Bytes per message (a batch always takes at least one job; one job is at most ~80 KiB). */
const MAX_BATCH_BYTES = 1024 * 1024;
/** Two batches in flight: the worker starts the next one while the last one's reply travels. */
const MAX_BATCHES_IN_FLIGHT = 2;

/** The main-thread side of the GCM worker lane: queues jobs, batches them, settles each caller. */
export class HsmWorker {
  readonly #init: WorkerInit;
  readonly #logger: HsmLogger;
  #w: Worker | undefined;
  #queue: Pending[] = [];
  readonly #batches = new Map<number, Pending[]>();
  readonly #closing = new Map<number, () => void>();
  #nextId = 1;
  #flushScheduled = false;

  constructor(modulePath: string, logger: HsmLogger) {
    this.#init = { modulePath };
    this.#logger = logger;
  }

  /** True while the worker thread exists (it starts on the first job, ends at terminate). */
  get running(): boolean {
    return this.#w !== undefined;
  }

  /** Jobs queued or running (for health and tests). */
  get pending(): number {
    let n = this.#queue.length;
    for (const b of this.#batches.values()) n += b.length;
    return n;
  }

  /**
   * The lane of generation `gen` (token in `slot`). `faulted` is the test fault switch: it fails
   * jobs queued or running when it goes on, as a removed device would.
   */
  lane(gen: number, slot: Uint8Array, faulted: () => boolean): WorkerLane {
    return {
      gen,
      run: async (job) => {
        if (faulted()) throw deviceRemoved('fault-injection');
        const out = await this.run(gen, slot, job);
        if (faulted()) throw deviceRemoved('fault-injection');
        return out;
      },
    };
  }

  /** Queue `job` for generation `gen` (whose token is in `slot`); resolves with the output. */
  run(gen: number, slot: Uint8Array, job: HsmJob): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#queue.push({ job, gen, slot, resolve, reject });
      // Jobs submitted in the same tick travel together.
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(() => {
          this.#flushScheduled = false;
          this.#flush();
        });
      }
    });
  }

  /** Close the worker's session (before C_Finalize); the next job opens a fresh one. */
  closeSessions(): Promise<void> {
    const w = this.#w;
    if (!w) return Promise.resolve();
    const id = this.#nextId++;
    return new Promise<void>((resolve) => {
      this.#closing.set(id, resolve);
      w.ref();
      w.postMessage({ t: 'close', id } satisfies WorkerRequest);
    });
  }

  /** Close the session and end the thread (it never finalises the module). */
  async terminate(): Promise<void> {
    await this.closeSessions();
    const w = this.#w;
    this.#w = undefined;
    if (w) await w.terminate();
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#batches.size < MAX_BATCHES_IN_FLIGHT) {
      const batch = this.#queue.splice(0, batchLength(this.#queue));
      const first = batch[0];
      if (!first) break;
      const id = this.#nextId++;
      try {
        const w = this.#worker();
        const buf = pack(batch);
        const msg: WorkerRequest = { t: 'batch', id, gen: first.gen, slot: first.slot, n: batch.length, buf };
        this.#batches.set(id, batch);
        w.ref();
        w.postMessage(msg, [buf]);
      } catch (err) {
        // Never leave a caller waiting: a batch that cannot be sent fails (INTERNAL), the next may not.
        this.#batches.delete(id);
        const detail = `HSM worker: ${err instanceof Error ? err.message : String(err)}`;
        for (const p of batch) p.reject(new KbError('INTERNAL', undefined, { detail }));
      }
    }
  }

  #worker(): Worker {
    if (this.#w) return this.#w;
    const w = new Worker(new URL('./hsm-worker-thread.ts', import.meta.url), { workerData: this.#init });
    w.on('message', (m: WorkerReply) => this.#onReply(m));
    w.on('error', (err) => this.#onDeath(w, err));
    w.on('exit', (code) => this.#onDeath(w, new Error(`HSM worker exited with code ${code}`)));
    this.#w = w;
    return w;
  }

  #onReply(m: WorkerReply): void {
    if (m.t === 'closed') {
      this.#closing.get(m.id)?.();
      this.#closing.delete(m.id);
    } else {
      const batch = this.#batches.get(m.id) ?? [];
      this.#batches.delete(m.id);
      settleBatch(batch, m);
      this.#flush();
    }
    if (this.pending === 0 && this.#closing.size === 0) this.#w?.unref();
  }

  /** The thread died (a bug, not a token fault): fail its jobs with INTERNAL; a new one starts on demand. */
  #onDeath(w: Worker, err: Error): void {
    if (this.#w !== w) return;
    this.#w = undefined;
    this.#logger.error({ err: err.message }, 'HSM worker thread died');
    const e = new KbError('INTERNAL', undefined, { detail: `HSM worker thread died: ${err.message}` });
    for (const b of this.#batches.values()) for (const p of b) p.reject(e);
    this.#batches.clear();
    for (const r of this.#closing.values()) r();
    this.#closing.clear();
    this.#flush();
  }
}

function jobBytes(j: HsmJob): number {
  return JOB_HEADER + j.key.length + j.iv.length + j.aad.length + j.data.length;
}

/** How many queued jobs the next batch takes: one generation, MAX_BATCH jobs, MAX_BATCH_BYTES. */
function batchLength(queue: readonly Pending[]): number {
  const first = queue[0];
  if (!first) return 0;
  let n = 1;
  let bytes = jobBytes(first.job);
  for (let next = queue[1]; next && n < MAX_BATCH && next.gen === first.gen; next = queue[n]) {
    bytes += jobBytes(next.job);
    if (bytes > MAX_BATCH_BYTES) break;
    n++;
  }
  return n;
}

function pack(batch: readonly Pending[]): ArrayBuffer {
  let size = 0;
  for (const { job } of batch) size += jobBytes(job);
  const buf = new ArrayBuffer(size);
  const view = new DataView(buf);
  const bytes = new Uint8Array(buf);
  let off = 0;
  for (const { job: j } of batch) {
    view.setUint32(off, JOB_OPS.indexOf(j.op), true);
    view.setUint32(off + 4, j.key.length, true);
    view.setUint32(off + 8, j.iv.length, true);
    view.setUint32(off + 12, j.aad.length, true);
    view.setUint32(off + 16, j.data.length, true);
    off += JOB_HEADER;
    for (const part of [j.key, j.iv, j.aad, j.data]) {
      bytes.set(part, off);
      off += part.length;
    }
  }
  return buf;
}

/** Each caller gets a copy of its own output (never a view into the batch's shared buffer). */
function settleBatch(batch: readonly Pending[], m: Extract<WorkerReply, { t: 'done' }>): void {
  const failed = new Map(m.failures.map((f) => [f.i, f]));
  const view = new DataView(m.buf);
  for (const [i, p] of batch.entries()) {
    const f = failed.get(i);
    if (f === undefined) {
      if (m.buf.byteLength < (i + 1) * 8) {
        p.reject(new KbError('INTERNAL', undefined, { detail: 'HSM worker lost a job' }));
        continue;
      }
      const off = view.getUint32(i * 8, true);
      const len = view.getUint32(i * 8 + 4, true);
      p.resolve(new Uint8Array(m.buf.slice(off, off + len)));
    } else if (f.ckr !== undefined) {
      p.reject(new Pkcs11Error(f.ckr, f.code, f.fn));
    } else {
      p.reject(new KbError('INTERNAL', undefined, { detail: `HSM worker: ${f.message}` }));
    }
  }
  // Every result was copied out; the reply held plaintexts of decrypts: do not leave them to the GC.
  new Uint8Array(m.buf).fill(0);
}
