/** One transaction on a client checked out of the pool: committed when fn resolves, else rolled back. */
import type pg from 'pg';

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
