/**
 * Leadership for the broker's singletons (shred epochs, OEK rotation, the rotation scan, approval
 * pruning): a PostgreSQL session advisory lock held on a dedicated connection. The server frees
 * it the moment that connection ends (the broker died, or was cut off and its backend killed),
 * so another broker can take over; the holder learns of the loss through `onLost`, and `verify()`
 * asks the server before each step whether the lock is still held here (fencing: a holder that
 * lost its connection must not act as leader on stale belief).
 */
import pg from 'pg';
import { pgClientConfig } from './pg-connection.ts';
import type { PgConnectionOptions } from './pg-connection.ts';

export interface PgLeaseOptions extends PgConnectionOptions {
  /** What is led (one lock per name and database), e.g. "shred-epoch". */
  readonly name: string;
  /** The lock is gone (connection ended or failed); called once, never after release(). */
  readonly onLost?: (e?: Error) => void;
  /** verify() gives up (and reports the lease lost) after this long; default 2000 ms. */
  readonly verifyTimeoutMs?: number;
}

/** Lease names are namespaced so they never share a key with the migration lock. */
const KEY_SQL = "hashtextextended('keybroker.lease:' || $1, 0)";

export class PgAdvisoryLease {
  readonly name: string;
  readonly #client: pg.Client;
  readonly #o: PgLeaseOptions;
  #held = true;

  private constructor(client: pg.Client, o: PgLeaseOptions) {
    this.#client = client;
    this.#o = o;
    this.name = o.name;
    client.on('error', (e) => this.#lose(e));
    client.on('end', () => this.#lose());
  }

  /** The lease when the lock was free (this connection now holds it), else undefined. */
  static async tryAcquire(o: PgLeaseOptions): Promise<PgAdvisoryLease | undefined> {
    if (o.name === '') throw new Error('lease name is empty');
    const client = new pg.Client({
      ...pgClientConfig(o),
      keepAlive: true,
      query_timeout: o.verifyTimeoutMs ?? 2000,
    });
    await client.connect();
    try {
      const r = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${KEY_SQL}) AS ok`, [
        o.name,
      ]);
      if (r.rows[0]?.ok === true) return new PgAdvisoryLease(client, o);
    } catch (e) {
      await client.end();
      throw e;
    }
    await client.end();
    return undefined;
  }

  /** Whether this broker believes it leads (false once the connection is gone or released). */
  get held(): boolean {
    return this.#held;
  }

  /** Asks the server whether this connection still holds the lock; a failure counts as lost. */
  async verify(): Promise<boolean> {
    if (!this.#held) return false;
    try {
      const r = await this.#client.query<{ n: number }>(
        `SELECT COUNT(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND objsubid = 1 AND pid = pg_backend_pid()
           AND ((classid::bigint << 32) | objid::bigint) = ${KEY_SQL}`,
        [this.name],
      );
      if (r.rows[0]?.n === 1) return true;
      this.#lose(new Error('advisory lock not held'));
    } catch (e) {
      this.#lose(e instanceof Error ? e : new Error(String(e)));
    }
    return false;
  }

  /** Give the lock up (and close the connection). */
  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    try {
      await this.#client.query(`SELECT pg_advisory_unlock(${KEY_SQL})`, [this.name]);
    } finally {
      await this.#client.end();
    }
  }

  #lose(e?: Error): void {
    if (!this.#held) return;
    this.#held = false;
    this.#client.end().catch(() => undefined); // already broken; ending it only frees the socket
    this.#o.onLost?.(e);
  }
}
