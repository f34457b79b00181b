/**
 * The worker side of `serve --workers N`: relays this broker's writes to the others (through
 * the primary), applies theirs, acknowledges shred drops, runs the singletons while the primary
 * says it leads, and answers the primary's readiness and metrics questions.
 */
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { KbError, toKbError } from '../errors.ts';
import type { KeyBroker } from '../keys/key-broker.ts';
import type { KeyBrokerCluster } from '../keys/key-broker-options.ts';
import type { Logger } from '../obs/logger.ts';
import type { Readiness } from '../obs/health-server.ts';
import { isKbMessage } from './cluster-messages.ts';
import type { CacheScope, PrimaryMessage, WorkerMessage } from './cluster-messages.ts';
import { coherentBroker } from './coherent-broker.ts';
import { DataDirLock } from './data-dir-lock.ts';
import { brokerId } from './worker-config.ts';
import type { WorkerIdentity } from './worker-config.ts';

/** What the worker needs of the daemon it runs in. */
export interface WorkerHost {
  readonly log: Logger;
  readonly registry: Registry;
  readiness(): Readiness;
  /** The open broker (undefined while the HSM or stores are not open: nothing is cached). */
  broker(): KeyBroker | undefined;
  /** Re-read the policy file and sections another worker wrote. */
  reloadPolicy(): Promise<void>;
}

/** A shred receipt waits at most this long for the other workers (the primary fences sooner). */
const DROP_TIMEOUT_MS = 15_000;

export class ClusterWorker {
  readonly identity: WorkerIdentity;
  readonly id: string;
  #leader = false;
  #host: WorkerHost | undefined;
  #nextDrop = 1;
  readonly #drops = new Map<number, (ok: boolean) => void>();
  readonly #lock: DataDirLock;
  #status: NodeJS.Timeout | undefined;

  constructor(identity: WorkerIdentity, dataDir: string) {
    this.identity = identity;
    this.id = brokerId(identity);
    this.#lock = new DataDirLock(join(dataDir, 'shred.lock'));
    process.on('message', (m: unknown) => {
      if (isKbMessage(m)) void this.#onMessage(m as PrimaryMessage);
    });
  }

  #send(m: WorkerMessage): void {
    if (process.send === undefined || !process.connected) return;
    process.send(m, undefined, {}, (err: Error | null) => {
      if (err !== null)
        this.#host?.log.warn({ broker: this.id, kind: m.kb, err: err.message }, 'cluster: send failed');
    });
  }

  /** Options for KeyBroker.open on this worker. */
  keyBrokerCluster(): KeyBrokerCluster {
    return {
      singletons: () => this.#leader,
      exclusive: (fn) => this.#lock.run(fn),
      changed: (scope) => this.#send({ kb: 'invalidate', scope }),
      beforeReceipt: (scope) => this.#requestDrop(scope),
    };
  }

  /** The broker the API calls: its writes are announced to the other workers. */
  coherent(broker: KeyBroker): KeyBroker {
    return coherentBroker(broker, (scope) => this.#send({ kb: 'invalidate', scope: scope ?? { org: '*' } }));
  }

  /** A policy write on this worker (file and sections): the others re-read it. */
  policyChanged(): void {
    this.#send({ kb: 'invalidate', scope: { org: '*' }, policy: true });
  }

  /** Start answering the primary (after the daemon's API listens). */
  attach(host: WorkerHost): void {
    this.#host = host;
    host.registry.setDefaultLabels({ broker: this.id });
    let opened = false;
    const push = () => {
      const r = host.readiness();
      this.#send({
        kb: 'status',
        ready: r.ready,
        degraded: r.degraded,
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
      });
      if (!opened && host.broker() !== undefined) {
        opened = true;
        this.#send({ kb: 'opened' });
      }
    };
    push();
    this.#status = setInterval(push, 250);
    this.#status.unref();
  }

  detach(): void {
    if (this.#status) clearInterval(this.#status);
  }

  async #requestDrop(scope: CacheScope): Promise<void> {
    const id = this.#nextDrop++;
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#drops.delete(id);
        resolve(false);
      }, DROP_TIMEOUT_MS);
      this.#drops.set(id, (v) => {
        clearTimeout(timer);
        this.#drops.delete(id);
        resolve(v);
      });
      this.#send({ kb: 'drop-request', id, scope });
    });
    // Fail closed: the shred stays unfinished (retried) rather than receipted too early.
    if (!ok)
      throw new KbError('HSM_UNAVAILABLE', 'the other broker processes did not confirm the shred', {
        detail: `drop ${id} of ${JSON.stringify(scope)} not confirmed`,
      });
  }

  async #onMessage(m: PrimaryMessage): Promise<void> {
    const host = this.#host;
    try {
      switch (m.kb) {
        case 'invalidate': {
          const b = host?.broker();
          if (b !== undefined) {
            if (m.scope.org === '*') for (const o of await b.listOrgs()) b.invalidate({ org: o.org });
            else b.invalidate(m.scope);
          }
          if (m.policy === true) await host?.reloadPolicy();
          return;
        }
        case 'drop': {
          const b = host?.broker();
          const { org, tenant, customer } = m.scope;
          if (b !== undefined && tenant !== undefined)
            await b.dropShredded({ org, tenant, ...(customer !== undefined ? { customer } : {}) });
          host?.log.info({ broker: this.id, org, tenant, customer }, 'cluster: dropped shredded keys');
          this.#send({ kb: 'drop-ack', id: m.id });
          return;
        }
        case 'drop-done':
          this.#drops.get(m.id)?.(m.ok);
          return;
        case 'leader': {
          const was = this.#leader;
          this.#leader = m.leader;
          host?.log.info({ broker: this.id, leader: m.leader }, 'cluster: singleton role');
          // A new leader finishes what the old one left (a shred or epoch it died in).
          if (m.leader && !was) await host?.broker()?.resumeUnfinished();
          return;
        }
        case 'metrics-request': {
          const metrics = host === undefined ? [] : await host.registry.getMetricsAsJSON();
          this.#send({ kb: 'metrics', id: m.id, metrics });
          return;
        }
      }
    } catch (err) {
      host?.log.warn(
        { broker: this.id, kind: m.kb, err: toKbError(err).safeMessage },
        'cluster message failed',
      );
    }
  }
}
