/**
 * The primary of `serve --workers N` (node:cluster): forks N full brokers that share the gRPC
 * port (cluster round-robin), restarts any that dies, relays cache invalidations between them,
 * fences shreds (a receipt waits until every live worker dropped the keys; one that does not
 * answer in time is killed first), picks the worker that runs the singletons, and serves
 * /healthz, /readyz and /metrics for all of them. It opens no HSM session and no store itself.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config/config-schema.ts';
import type { Logger } from '../obs/logger.ts';
import { isKbMessage } from './cluster-messages.ts';
import type { CacheScope, PrimaryMessage, WorkerMessage } from './cluster-messages.ts';
import { ClusterHealthServer } from './cluster-health.ts';
import type { WorkerStatus } from './cluster-health.ts';

/** A worker that does not confirm a shred drop within this is killed before the receipt. */
const DROP_ACK_MS = 3_000;
const RESTART_MIN_MS = 250;
const RESTART_MAX_MS = 10_000;

interface Slot {
  readonly id: number;
  worker: Worker | undefined;
  status: { ready: boolean; degraded: boolean; reason?: string } | undefined;
  reported: boolean;
  restarts: number;
  startedAt: number;
}

export interface PrimaryOptions {
  readonly cfg: Config;
  readonly workers: number;
  readonly log: Logger;
  readonly flush: () => void;
}

export class ClusterPrimary {
  readonly #o: PrimaryOptions;
  readonly #slots: Slot[];
  #leader: Slot | undefined;
  #stopping = false;
  #grpcPort = 0;
  #metricsPort = 0;
  #readyLogged = false;
  #health: ClusterHealthServer | undefined;
  #nextRequest = 1;
  readonly #metricsWaits = new Map<number, { got: unknown[][]; want: number; done: () => void }>();
  readonly #firstOpened: Promise<void>;
  #openedFirst: () => void = () => undefined;

  constructor(o: PrimaryOptions) {
    this.#o = o;
    this.#slots = Array.from({ length: o.workers }, (_, i) => ({
      id: i + 1,
      worker: undefined,
      status: undefined,
      reported: false,
      restarts: 0,
      startedAt: 0,
    }));
    this.#firstOpened = new Promise((r) => (this.#openedFirst = r));
  }

  /** Fork worker 1, let it create what a first start creates, then the others; serve health. */
  async start(): Promise<void> {
    const { cfg, log } = this.#o;
    if (cfg.metrics.enabled) {
      this.#health = new ClusterHealthServer(
        () => this.#statuses(),
        () => this.#metrics(),
      );
      this.#metricsPort = await this.#health.listen(cfg.metrics.host, cfg.metrics.port);
    }
    const first = this.#slots[0] as Slot;
    this.#fork(first);
    await this.#firstOpened;
    for (const s of this.#slots.slice(1)) this.#fork(s);
    log.info({ workers: this.#slots.length }, 'cluster: all workers started');
  }

  #fork(s: Slot): void {
    const w = cluster.fork({ KB_WORKER_ID: String(s.id), KB_WORKER_COUNT: String(this.#slots.length) });
    s.worker = w;
    s.status = undefined;
    s.reported = false;
    s.startedAt = Date.now();
    w.on('message', (m: unknown) => {
      if (isKbMessage(m)) this.#onMessage(s, w, m as WorkerMessage);
    });
    w.on('listening', (addr: { port: number }) => this.#onListening(addr.port));
    w.on('exit', (code, signal) => this.#onExit(s, w, code, signal));
    // A send racing the worker's death fails here; its exit is handled by 'exit'.
    w.on('error', (err: Error) =>
      this.#o.log.warn({ broker: `w${s.id}`, err: err.message }, 'cluster: worker channel error'),
    );
    this.#o.log.info({ broker: `w${s.id}`, workerPid: w.process.pid }, 'cluster: worker forked');
  }

  #onListening(port: number): void {
    if (this.#grpcPort !== 0 || port === 0) return;
    this.#grpcPort = port;
    const { cfg, log } = this.#o;
    const grpc = `${cfg.listen.host}:${port}`;
    const metrics = cfg.metrics.enabled ? `${cfg.metrics.host}:${this.#metricsPort}` : '';
    if (cfg.lifecycle.readyFile !== '') {
      const f = cfg.lifecycle.readyFile;
      mkdirSync(dirname(f), { recursive: true });
      const body = { pid: process.pid, grpc, grpcPort: port, metrics, metricsPort: this.#metricsPort };
      writeFileSync(`${f}.tmp`, JSON.stringify(body) + '\n');
      renameSync(`${f}.tmp`, f);
    }
    log.info(
      { grpc, grpcPort: port, metrics, metricsPort: this.#metricsPort, workers: this.#slots.length },
      'cluster listening',
    );
  }

  #live(): Slot[] {
    return this.#slots.filter((s) => s.worker !== undefined && !s.worker.isDead());
  }

  #send(s: Slot, m: PrimaryMessage): void {
    const w = s.worker;
    if (w === undefined || w.isDead() || !w.isConnected()) return;
    w.send(m, undefined, (err: Error | null) => {
      if (err !== null)
        this.#o.log.warn({ broker: `w${s.id}`, kind: m.kb, err: err.message }, 'cluster: send failed');
    });
  }

  #onMessage(s: Slot, w: Worker, m: WorkerMessage): void {
    if (s.worker !== w) return; // from a worker since replaced
    switch (m.kb) {
      case 'status':
        s.status = {
          ready: m.ready,
          degraded: m.degraded,
          ...(m.reason !== undefined ? { reason: m.reason } : {}),
        };
        s.reported = true;
        if (this.#leader === undefined) this.#elect();
        this.#maybeReady();
        return;
      case 'opened':
        if (s.id === 1) this.#openedFirst();
        return;
      case 'invalidate':
        for (const o of this.#live())
          if (o !== s)
            this.#send(o, { kb: 'invalidate', scope: m.scope, ...(m.policy ? { policy: true } : {}) });
        return;
      case 'drop-request':
        void this.#fence(s, m.id, m.scope);
        return;
      case 'drop-ack':
        this.#acks.get(m.id)?.(s);
        return;
      case 'metrics': {
        const wait = this.#metricsWaits.get(m.id);
        if (wait) {
          wait.got.push(m.metrics);
          if (wait.got.length >= wait.want) wait.done();
        }
        return;
      }
    }
  }

  readonly #acks = new Map<number, (s: Slot) => void>();

  /**
   * Every live worker but the requester drops the shredded keys; one that has not confirmed
   * within DROP_ACK_MS is killed (SIGKILL: its memory, and the keys in it, are gone) and restarted.
   * Only then is the requester told to sign the receipt.
   */
  async #fence(from: Slot, reqId: number, scope: CacheScope): Promise<void> {
    const id = this.#nextRequest++;
    const waiting = new Set(this.#live().filter((o) => o !== from));
    const all = new Promise<void>((resolve) => {
      if (waiting.size === 0) return resolve();
      this.#acks.set(id, (o) => {
        waiting.delete(o);
        if (waiting.size === 0) resolve();
      });
      for (const o of waiting) this.#send(o, { kb: 'drop', id, scope });
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, DROP_ACK_MS)))]);
    clearTimeout(timer);
    this.#acks.delete(id);
    const exits: Promise<unknown>[] = [];
    for (const o of waiting) {
      const w = o.worker;
      if (w === undefined || w.isDead()) continue;
      this.#o.log.error(
        { broker: `w${o.id}`, workerPid: w.process.pid, scope },
        'cluster: worker did not confirm dropping shredded keys: killing it before the receipt',
      );
      exits.push(new Promise((r) => w.once('exit', r)));
      w.process.kill('SIGKILL');
    }
    await Promise.all(exits);
    this.#send(from, { kb: 'drop-done', id: reqId, ok: true });
  }

  #elect(): void {
    const next = this.#live().find((s) => s.reported);
    if (next === undefined) return;
    this.#leader = next;
    this.#send(next, { kb: 'leader', leader: true });
    this.#o.log.info({ broker: `w${next.id}` }, 'cluster: singletons run on this worker');
  }

  #maybeReady(): void {
    if (this.#readyLogged) return;
    if (!this.#slots.every((s) => s.status?.ready === true)) return;
    this.#readyLogged = true;
    this.#o.log.info({ workers: this.#slots.length, grpcPort: this.#grpcPort }, 'cluster ready');
  }

  #onExit(s: Slot, w: Worker, code: number | null, signal: string | null): void {
    if (s.worker !== w) return;
    // A dead worker holds no keys: pending drops need nothing more from it.
    for (const ack of this.#acks.values()) ack(s);
    if (this.#stopping) return;
    if (this.#leader === s) {
      this.#leader = undefined;
      this.#elect();
    }
    const quick = Date.now() - s.startedAt < 5_000;
    s.restarts = quick ? s.restarts + 1 : 0;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.min(s.restarts, 6));
    this.#o.log.error(
      { broker: `w${s.id}`, workerPid: w.process.pid, code, signal, restartInMs: delay },
      'cluster: worker died; restarting',
    );
    setTimeout(() => {
      if (!this.#stopping) this.#fork(s);
    }, delay);
  }

  #statuses(): WorkerStatus[] {
    return this.#slots.map((s) => ({
      broker: `w${s.id}`,
      pid: s.worker?.process.pid,
      alive: s.worker !== undefined && !s.worker.isDead(),
      ready: s.status?.ready ?? false,
      degraded: s.status?.degraded ?? false,
      ...(s.status?.reason !== undefined ? { reason: s.status.reason } : {}),
    }));
  }

  async #metrics(): Promise<{ type: string; text: string }> {
    const live = this.#live();
    const id = this.#nextRequest++;
    const got: unknown[][] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      this.#metricsWaits.set(id, {
        got,
        want: live.length,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      if (live.length === 0) resolve();
      for (const s of live) this.#send(s, { kb: 'metrics-request', id });
    });
    this.#metricsWaits.delete(id);
    const reg = AggregatorRegistry.aggregate(got as Parameters<typeof AggregatorRegistry.aggregate>[0]);
    return { type: reg.contentType, text: await reg.metrics() };
  }

  /** SIGHUP (and the test hook) to every worker. */
  forward(signal: NodeJS.Signals): void {
    for (const s of this.#live()) s.worker?.process.kill(signal);
  }

  /** SIGTERM every worker (each drains), wait for all; true when all stopped cleanly. */
  async stop(): Promise<boolean> {
    this.#stopping = true;
    const exits = this.#live().map(
      (s) =>
        new Promise<boolean>((r) => {
          const w = s.worker as Worker;
          // A worker still starting has no handler yet and dies of the signal: nothing to drain.
          const starting = s.status?.ready !== true;
          w.once('exit', (code, signal) => r(code === 0 || (starting && signal === 'SIGTERM')));
          w.process.kill('SIGTERM');
        }),
    );
    const clean = (await Promise.all(exits)).every(Boolean);
    await this.#health?.close();
    const f = this.#o.cfg.lifecycle.readyFile;
    if (f !== '') rmSync(f, { force: true });
    this.#o.log.info({ clean }, 'cluster stopped');
    return clean;
  }
}

/** Run the primary until SIGTERM/SIGINT; resolves with the exit code. */
export async function runClusterPrimary(o: PrimaryOptions): Promise<number> {
  const p = new ClusterPrimary(o);
  const done = new Promise<number>((resolve) => {
    let stopping = false;
    const onStop = (sig: string) => {
      if (stopping) {
        p.forward('SIGKILL');
        resolve(1);
        return;
      }
      stopping = true;
      o.log.info({ sig }, 'signal received: stopping every worker');
      p.stop().then(
        (clean) => resolve(clean ? 0 : 1),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => onStop('SIGTERM'));
    process.on('SIGINT', () => onStop('SIGINT'));
    process.on('SIGHUP', () => p.forward('SIGHUP'));
    if (process.env.KB_TEST_HOOKS === '1') process.on('SIGUSR2', () => p.forward('SIGUSR2'));
  });
  await p.start();
  const code = await done;
  o.flush();
  return code;
}
