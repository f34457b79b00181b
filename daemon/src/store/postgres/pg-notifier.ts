/**
 * LISTEN/NOTIFY for cache coherence across brokers. A notification sent inside a transaction
 * (pgNotify on its client, e.g. PgTenantStore.notify) is delivered only if and when it commits,
 * so no broker hears of a change before it is visible. The listener keeps one dedicated
 * connection and reconnects with backoff; notifications sent while it was away are lost, so
 * `onReconnect` tells the owner to treat every cached entry as stale.
 */
import pg from 'pg';
import { pgClientConfig } from './pg-connection.ts';
import type { PgConnectionOptions, PgQueryable } from './pg-connection.ts';

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;
/** PostgreSQL refuses payloads of 8000 bytes or more. */
export const MAX_NOTIFY_PAYLOAD_BYTES = 7999;

function checkChannel(channel: string): void {
  if (!CHANNEL.test(channel)) throw new Error(`notification channel must match ${CHANNEL.source}`);
}

/** Send a notification on `db` (in a transaction: delivered at its commit, never on rollback). */
export async function pgNotify(db: PgQueryable, channel: string, payload: string): Promise<void> {
  checkChannel(channel);
  if (Buffer.byteLength(payload) > MAX_NOTIFY_PAYLOAD_BYTES) {
    throw new Error(`notification payload over ${MAX_NOTIFY_PAYLOAD_BYTES} bytes`);
  }
  await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

export type NotificationHandler = (payload: string) => void;

export interface PgNotifierOptions extends PgConnectionOptions {
  /** Called after each reconnect: notifications of the gap are lost, revalidate what they guard. */
  readonly onReconnect?: () => void;
  /** The connection failed (it is being re-established). */
  readonly onError?: (e: Error) => void;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
}

export class PgNotifier {
  readonly #o: PgNotifierOptions;
  readonly #handlers = new Map<string, Set<NotificationHandler>>();
  #client: pg.Client | undefined;
  /** Every use of the connection runs in this chain, so LISTENs and reconnects never interleave. */
  #chain: Promise<void> = Promise.resolve();
  #retryMs: number;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(o: PgNotifierOptions) {
    this.#o = o;
    this.#retryMs = o.retryInitialMs ?? 100;
  }

  /** Connect the listening connection (the first connection must succeed; later ones are retried). */
  static async open(o: PgNotifierOptions): Promise<PgNotifier> {
    const n = new PgNotifier(o);
    n.#client = await n.#connect();
    return n;
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  /** Subscribe cb to a channel; resolves once LISTEN is in force (or queued for the reconnect). */
  async listen(channel: string, cb: NotificationHandler): Promise<() => Promise<void>> {
    checkChannel(channel);
    let set = this.#handlers.get(channel);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(cb);
    if (first) {
      try {
        await this.#serial(async (c) => {
          await c.query(`LISTEN ${channel}`);
        });
      } catch (e) {
        set.delete(cb);
        if (set.size === 0) this.#handlers.delete(channel);
        throw e;
      }
    }
    return async () => {
      const s = this.#handlers.get(channel);
      if (s === undefined || !s.delete(cb) || s.size > 0) return;
      this.#handlers.delete(channel);
      await this.#serial(async (c) => {
        await c.query(`UNLISTEN ${channel}`);
      });
    };
  }

  /** Send a notification over the listening connection (fails while it is reconnecting). */
  async notify(channel: string, payload: string): Promise<void> {
    if (this.#client === undefined) throw new Error('notifier is reconnecting');
    await pgNotify(this.#client, channel, payload);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const c = this.#client;
    this.#client = undefined;
    await this.#chain;
    await c?.end();
  }

  /** fn on the connection when there is one; without one, the reconnect re-LISTENs anyway. */
  async #serial(fn: (c: pg.Client) => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#client !== undefined) await fn(this.#client);
    });
    this.#chain = run.catch(() => undefined); // the caller gets the error; the chain goes on
    await run;
  }

  async #connect(): Promise<pg.Client> {
    const c = new pg.Client(pgClientConfig(this.#o));
    c.on('notification', (m) => {
      const set = this.#handlers.get(m.channel);
      for (const cb of set ?? []) {
        try {
          cb(m.payload ?? '');
        } catch (e) {
          // A failing subscriber must neither stop the others nor throw into pg's event loop.
          this.#o.onError?.(e instanceof Error ? e : new Error(String(e)));
        }
      }
    });
    c.on('error', (e) => {
      this.#o.onError?.(e);
      this.#lost(c);
    });
    c.on('end', () => this.#lost(c));
    await c.connect();
    for (const channel of this.#handlers.keys()) await c.query(`LISTEN ${channel}`);
    return c;
  }

  #lost(c: pg.Client): void {
    if (this.#client !== c) return;
    this.#client = undefined;
    c.end().catch((e: unknown) => this.#o.onError?.(e instanceof Error ? e : new Error(String(e))));
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#chain = this.#chain.then(async () => {
        if (this.#closed) return;
        try {
          const c = await this.#connect();
          if (this.#closed) {
            await c.end();
            return;
          }
          this.#client = c;
          this.#retryMs = this.#o.retryInitialMs ?? 100;
          this.#o.onReconnect?.();
        } catch (e) {
          this.#o.onError?.(e instanceof Error ? e : new Error(String(e)));
          this.#retryMs = Math.min(this.#retryMs * 2, this.#o.retryMaxMs ?? 5_000);
          this.#schedule();
        }
      });
    }, this.#retryMs);
  }
}
