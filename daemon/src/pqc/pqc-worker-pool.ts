/**
 * A pool of worker threads for CPU-heavy post-quantum operations (ML-DSA signing, key
 * generation, decapsulation when busy), so the event loop stays responsive and every core works.
 *
 * - N workers (default: os.availableParallelism()), each running pqc-worker.ts (TypeScript, run by
 *   Node's type stripping in the worker too) with its own engines and its own power-on self-test:
 *   `create` rejects if any worker's self-test fails.
 * - Bounded queue: beyond `maxQueue` waiting operations, calls fail fast with POOL_EXHAUSTED.
 * - Requests queued for a worker are coalesced into one message (up to `maxBatch`), with up to
 *   two batches in flight per worker, so per-message overhead does not dominate fast operations.
 * - Inputs are copied into fresh buffers that are transferred (the caller's arrays are never
 *   detached); results come back transferred. A worker that dies fails its in-flight operations
 *   with INTERNAL and is replaced.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { KbError, type ErrorCode, ERRORS } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import type { EngineName, Encapsulation, PqcKeyPair } from './pqc-engine.ts';
import type { KemAlgorithm, PqcAlgorithm, SigAlgorithm } from './pqc-params.ts';
import type {
  HybridKeyKind,
  ItemResult,
  VerifyItem,
  PqcWorkerOp,
  PqcWorkerReady,
  PqcWorkerReply,
  PqcWorkerRequest,
  PqcWorkerResult,
  WirePrivateKey,
} from './pqc-worker-protocol.ts';

export interface PqcWorkerPoolOptions {
  /** Worker threads; default availableParallelism(). */
  readonly size?: number;
  /** Operations allowed to wait; beyond it calls fail with POOL_EXHAUSTED. Default 4096. */
  readonly maxQueue?: number;
  /** Operations per message to a worker. Default 32. */
  readonly maxBatch?: number;
}

interface Pending {
  readonly req: PqcWorkerRequest;
  readonly transfer: ArrayBuffer[];
  resolve(r: PqcWorkerResult): void;
  reject(e: KbError): void;
}

interface Slot {
  worker: Worker;
  batches: number;
  readonly inFlight: Map<number, Pending>;
}

const WORKER_URL = new URL('./pqc-worker.ts', import.meta.url);
const MAX_BATCHES_PER_WORKER = 2;

/** A fresh copy whose buffer may be transferred. */
function fresh(a: Uint8Array, transfer: ArrayBuffer[]): Uint8Array {
  const c = Uint8Array.from(a);
  transfer.push(c.buffer);
  return c;
}

function wireKey(k: WirePrivateKey, transfer: ArrayBuffer[]): WirePrivateKey {
  return { form: k.form, bytes: fresh(k.bytes, transfer), publicKey: fresh(k.publicKey, transfer) };
}

/** Largest batch one signMany/verifyMany call may carry. */
export const MAX_BATCH_ITEMS = 1024;

/** A batch item: its value, or the user error (KbError) that item alone produced. */
export type BatchItem<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: KbError };

function batchItem<T>(r: ItemResult<T>): BatchItem<T> {
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: remoteError(r.code, r.message) };
}

/** Rebuild the worker's KbError, keeping its safe detail (e.g. which parameter was bad). */
function remoteError(code: string, safeMessage: string): KbError {
  if (!(code in ERRORS)) return new KbError('INTERNAL', undefined, { detail: safeMessage });
  const c = code as ErrorCode;
  const prefix = `${ERRORS[c].message}: `;
  return new KbError(c, safeMessage.startsWith(prefix) ? safeMessage.slice(prefix.length) : undefined);
}

export class PqcWorkerPool {
  readonly size: number;
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Pending[] = [];
  #nextId = 1;
  #closed = false;

  private constructor(size: number, maxQueue: number, maxBatch: number) {
    this.size = size;
    this.#maxQueue = maxQueue;
    this.#maxBatch = maxBatch;
  }

  /** Start the workers and wait until each has passed its self-test. */
  static async create(opts: PqcWorkerPoolOptions = {}): Promise<PqcWorkerPool> {
    const size = opts.size ?? availableParallelism();
    if (!Number.isInteger(size) || size < 1 || size > 256)
      throw new KbError('INVALID_ARGUMENT', 'size must be 1..256');
    const pool = new PqcWorkerPool(size, opts.maxQueue ?? 4096, opts.maxBatch ?? 32);
    try {
      for (let i = 0; i < size; i++) pool.#slots.push(await pool.#spawn());
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  get stats(): { workers: number; queued: number; inFlight: number } {
    const inFlight = this.#slots.reduce((a, s) => a + s.inFlight.size, 0);
    return { workers: this.#slots.length, queued: this.#queue.length, inFlight };
  }

  async generateKeyPair(engine: EngineName, alg: PqcAlgorithm, seed?: Uint8Array): Promise<PqcKeyPair> {
    const transfer: ArrayBuffer[] = [];
    const work: PqcWorkerOp =
      seed === undefined
        ? { op: 'generateKeyPair', engine, alg }
        : { op: 'generateKeyPair', engine, alg, seed: fresh(seed, transfer) };
    const r = await this.#submit(work, transfer);
    if (r.op !== 'generateKeyPair') throw new KbError('INTERNAL');
    return {
      alg,
      publicKey: r.publicKey,
      secretKey: new SecretBytes(r.secretKey),
      seed: r.seed === undefined ? undefined : new SecretBytes(r.seed),
    };
  }

  /** Generate an X-Wing or composite key on a worker: its stored secret and public key. */
  async generateHybridKey(kind: HybridKeyKind): Promise<{ publicKey: Uint8Array; secret: SecretBytes }> {
    const r = await this.#submit({ op: 'generateHybridKey', engine: 'openssl', kind }, []);
    if (r.op !== 'generateHybridKey') throw new KbError('INTERNAL');
    return { publicKey: r.publicKey, secret: new SecretBytes(r.secret) };
  }

  async encapsulate(engine: EngineName, alg: KemAlgorithm, publicKey: Uint8Array): Promise<Encapsulation> {
    const transfer: ArrayBuffer[] = [];
    const r = await this.#submit(
      { op: 'encapsulate', engine, alg, publicKey: fresh(publicKey, transfer) },
      transfer,
    );
    if (r.op !== 'encapsulate') throw new KbError('INTERNAL');
    return { cipherText: r.cipherText, sharedSecret: r.sharedSecret };
  }

  async decapsulate(
    engine: EngineName,
    alg: KemAlgorithm,
    key: WirePrivateKey,
    cipherText: Uint8Array,
  ): Promise<Uint8Array> {
    const transfer: ArrayBuffer[] = [];
    const r = await this.#submit(
      {
        op: 'decapsulate',
        engine,
        alg,
        key: wireKey(key, transfer),
        cipherText: fresh(cipherText, transfer),
      },
      transfer,
    );
    if (r.op !== 'decapsulate') throw new KbError('INTERNAL');
    return r.sharedSecret;
  }

  async sign(
    engine: EngineName,
    alg: SigAlgorithm,
    key: WirePrivateKey,
    message: Uint8Array,
    context?: Uint8Array,
  ): Promise<Uint8Array> {
    const transfer: ArrayBuffer[] = [];
    const base = {
      op: 'sign',
      engine,
      alg,
      key: wireKey(key, transfer),
      message: fresh(message, transfer),
    } as const;
    const r = await this.#submit(
      context === undefined ? base : { ...base, context: fresh(context, transfer) },
      transfer,
    );
    if (r.op !== 'sign') throw new KbError('INTERNAL');
    return r.signature;
  }

  async verify(
    engine: EngineName,
    alg: SigAlgorithm,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context?: Uint8Array,
  ): Promise<boolean> {
    const transfer: ArrayBuffer[] = [];
    const base = {
      op: 'verify',
      engine,
      alg,
      publicKey: fresh(publicKey, transfer),
      message: fresh(message, transfer),
      signature: fresh(signature, transfer),
    } as const;
    const r = await this.#submit(
      context === undefined ? base : { ...base, context: fresh(context, transfer) },
      transfer,
    );
    if (r.op !== 'verify') throw new KbError('INTERNAL');
    return r.valid;
  }

  /**
   * Sign many messages with one key in one worker round trip (for batch RPCs). Per-item user
   * errors come back in place; internal errors reject the whole call.
   */
  async signMany(
    engine: EngineName,
    alg: SigAlgorithm,
    key: WirePrivateKey,
    messages: readonly Uint8Array[],
    context?: Uint8Array,
  ): Promise<BatchItem<Uint8Array>[]> {
    if (messages.length > MAX_BATCH_ITEMS)
      throw new KbError('TOO_LARGE', `at most ${MAX_BATCH_ITEMS} items per batch`);
    const transfer: ArrayBuffer[] = [];
    const base = {
      op: 'signMany',
      engine,
      alg,
      key: wireKey(key, transfer),
      messages: messages.map((m) => fresh(m, transfer)),
    } as const;
    const r = await this.#submit(
      context === undefined ? base : { ...base, context: fresh(context, transfer) },
      transfer,
    );
    if (r.op !== 'signMany') throw new KbError('INTERNAL');
    return r.signatures.map(batchItem);
  }

  /** `count` encapsulations to one public key in one worker round trip. */
  async encapsulateMany(
    engine: EngineName,
    alg: KemAlgorithm,
    publicKey: Uint8Array,
    count: number,
  ): Promise<Encapsulation[]> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH_ITEMS)
      throw new KbError('TOO_LARGE', `1 to ${MAX_BATCH_ITEMS} items per batch`);
    const transfer: ArrayBuffer[] = [];
    const r = await this.#submit(
      { op: 'encapsulateMany', engine, alg, publicKey: fresh(publicKey, transfer), count },
      transfer,
    );
    if (r.op !== 'encapsulateMany') throw new KbError('INTERNAL');
    return [...r.encapsulations];
  }

  /** Decapsulate many ciphertexts with one key in one worker round trip; errors stay per item. */
  async decapsulateMany(
    engine: EngineName,
    alg: KemAlgorithm,
    key: WirePrivateKey,
    cipherTexts: readonly Uint8Array[],
  ): Promise<BatchItem<Uint8Array>[]> {
    if (cipherTexts.length > MAX_BATCH_ITEMS)
      throw new KbError('TOO_LARGE', `at most ${MAX_BATCH_ITEMS} items per batch`);
    const transfer: ArrayBuffer[] = [];
    const r = await this.#submit(
      {
        op: 'decapsulateMany',
        engine,
        alg,
        key: wireKey(key, transfer),
        cipherTexts: cipherTexts.map((c) => fresh(c, transfer)),
      },
      transfer,
    );
    if (r.op !== 'decapsulateMany') throw new KbError('INTERNAL');
    return r.sharedSecrets.map(batchItem);
  }

  /** Verify many signatures in one worker round trip; per-item results as for signMany. */
  async verifyMany(
    engine: EngineName,
    alg: SigAlgorithm,
    items: readonly VerifyItem[],
  ): Promise<BatchItem<boolean>[]> {
    if (items.length > MAX_BATCH_ITEMS)
      throw new KbError('TOO_LARGE', `at most ${MAX_BATCH_ITEMS} items per batch`);
    const transfer: ArrayBuffer[] = [];
    const wire = items.map((i) => {
      const base = {
        publicKey: fresh(i.publicKey, transfer),
        message: fresh(i.message, transfer),
        signature: fresh(i.signature, transfer),
      };
      return i.context === undefined ? base : { ...base, context: fresh(i.context, transfer) };
    });
    const r = await this.#submit({ op: 'verifyMany', engine, alg, items: wire }, transfer);
    if (r.op !== 'verifyMany') throw new KbError('INTERNAL');
    return r.valid.map(batchItem);
  }

  /**
   * Destroy the cached keys with these ids (workerKeyId) in every worker; resolves once each
   * worker has processed it, i.e. after everything sent to it before (so an empty list is a
   * barrier: a shred awaits it before signing its receipt). Never rejects. Returns how many were
   * destroyed and how many keys the workers still hold.
   */
  async evictKeys(ids: readonly string[]): Promise<{ evicted: number; remaining: number }> {
    const total = { evicted: 0, remaining: 0 };
    if (this.#closed) return total;
    await Promise.all(
      this.#slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            // Straight to the worker, not through the queue: eviction must not wait behind load.
            const req: PqcWorkerRequest = { id: this.#nextId++, work: { op: 'evictKeys', ids: [...ids] } };
            const done = (r?: PqcWorkerResult) => {
              if (r?.op === 'evictKeys') {
                total.evicted += r.evicted;
                total.remaining += r.remaining;
              }
              resolve();
            };
            slot.inFlight.set(req.id, { req, transfer: [], resolve: done, reject: () => done() });
            slot.batches++;
            slot.worker.postMessage([req]);
          }),
      ),
    );
    return total;
  }

  /** Fail queued work with SHUTTING_DOWN, let in-flight work finish, then stop the workers. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#queue.splice(0)) p.reject(new KbError('SHUTTING_DOWN'));
    await Promise.all(
      this.#slots.map(async (s) => {
        while (s.inFlight.size > 0) await new Promise((r) => setTimeout(r, 5));
        await s.worker.terminate();
      }),
    );
  }

  #submit(work: PqcWorkerOp, transfer: ArrayBuffer[]): Promise<PqcWorkerResult> {
    if (this.#closed) return Promise.reject(new KbError('SHUTTING_DOWN'));
    if (this.#queue.length >= this.#maxQueue)
      return Promise.reject(new KbError('POOL_EXHAUSTED', 'pqc worker queue is full'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ req: { id: this.#nextId++, work }, transfer, resolve, reject });
      this.#pump();
    });
  }

  /** Hand queued work to workers with a free batch slot, least loaded first. */
  #pump(): void {
    while (this.#queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.#slots) {
        if (
          s.batches < MAX_BATCHES_PER_WORKER &&
          (best === undefined || s.inFlight.size < best.inFlight.size)
        )
          best = s;
      }
      if (best === undefined) return;
      // Spread a burst over idle workers rather than giving it all to the first one.
      const share = Math.max(1, Math.min(this.#maxBatch, Math.ceil(this.#queue.length / this.#slots.length)));
      const batch = this.#queue.splice(0, share);
      const transfer: ArrayBuffer[] = [];
      for (const p of batch) {
        best.inFlight.set(p.req.id, p);
        transfer.push(...p.transfer);
      }
      best.batches++;
      best.worker.postMessage(
        batch.map((p) => p.req),
        transfer,
      );
    }
  }

  #spawn(): Promise<Slot> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_URL);
      const slot: Slot = { worker, batches: 0, inFlight: new Map() };
      let started = false;
      worker.on('message', (msg: PqcWorkerReady | PqcWorkerReply[]) => {
        if (!started) {
          started = true;
          const ready = msg as PqcWorkerReady;
          if (ready.selfTestOk) resolve(slot);
          else {
            void worker.terminate();
            reject(
              new KbError('FAILED_PRECONDITION', `pqc worker self-test failed: ${ready.failed.join('; ')}`),
            );
          }
          return;
        }
        slot.batches--;
        for (const reply of msg as PqcWorkerReply[]) {
          const p = slot.inFlight.get(reply.id);
          if (p === undefined) continue;
          slot.inFlight.delete(reply.id);
          if (reply.ok) p.resolve(reply.result);
          else p.reject(remoteError(reply.code, reply.message));
        }
        this.#pump();
      });
      worker.on('error', (err) => {
        if (!started) {
          started = true;
          reject(new KbError('INTERNAL', undefined, { cause: err, detail: 'pqc worker failed to start' }));
        }
      });
      worker.on('exit', () => {
        for (const p of slot.inFlight.values())
          p.reject(new KbError('INTERNAL', undefined, { detail: 'pqc worker exited' }));
        slot.inFlight.clear();
        slot.batches = 0;
        const i = this.#slots.indexOf(slot);
        if (i >= 0 && !this.#closed) {
          this.#slots.splice(i, 1);
          this.#spawn().then(
            (s) => {
              this.#slots.push(s);
              this.#pump();
            },
            () => undefined, // the pool keeps serving on the remaining workers
          );
        }
      });
    });
  }
}
