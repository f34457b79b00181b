/** One transaction on a client checked out of the pool: committed when fn resolves, else rolled back. */
import type pg from 'pg';
import type { PgQueryable } from './pg-connection.ts';

/**
 * Runs fn inside BEGIN ... COMMIT on one pooled client. A client whose ROLLBACK failed (its
 * connection is broken or its state unknown) is destroyed rather than returned to the pool.
 */
export async function transaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    const r = await fn(c);
    await c.query('COMMIT');
    return r;
  } catch (e) {
    await c.query('ROLLBACK').catch((re: unknown) => {
      broken = re instanceof Error ? re : new Error(String(re));
    });
    throw e;
  } finally {
    c.release(broken);
  }
}

/**
 * A view of a transaction's client that refuses queries once the transaction has ended: a store
 * object that escaped its callback must not run statements on a client the pool has since lent
 * to someone else (outside any transaction, or inside another tenant's).
 */
export function scopedClient(c: pg.PoolClient): { readonly db: PgQueryable; end(): void } {
  let open = true;
  return {
    db: {
      query: async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => {
        if (!open) throw new Error('transaction has ended');
        return await c.query<R>(text, values);
      },
    },
    end: () => {
      open = false;
    },
  };
}
