// The session pool without a token: FIFO hand-over, the bounded queue, failure of waiters.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { SessionPool } from '../../daemon/src/hsm/session-pool.ts';

describe('SessionPool', () => {
  it('lends each session to one caller at a time and hands them over in FIFO order', async () => {
    const pool = new SessionPool(['a', 'b'], 10);
    const first = await pool.acquire();
    const second = await pool.acquire();
    assert.notEqual(first, second);
    assert.equal(pool.inUse, 2);
    const order: string[] = [];
    const w1 = pool.acquire().then((s) => order.push(`w1:${s}`));
    const w2 = pool.acquire().then((s) => order.push(`w2:${s}`));
    assert.equal(pool.waiting, 2);
    pool.release(first);
    pool.release(second);
    await Promise.all([w1, w2]);
    assert.deepEqual(order, [`w1:${first}`, `w2:${second}`]);
  });

  it('rejects with POOL_EXHAUSTED once maxWaiters callers are queued', async () => {
    const pool = new SessionPool(['a'], 2);
    const held = await pool.acquire();
    const queued = [pool.acquire(), pool.acquire()];
    await assert.rejects(pool.acquire(), (e: unknown) => e instanceof KbError && e.code === 'POOL_EXHAUSTED');
    pool.release(held);
    pool.release(await queued[0]!);
    assert.equal(await queued[1], 'a');
  });

  it('fail() rejects every waiter and later acquire with the given error', async () => {
    const pool = new SessionPool(['a'], 5);
    await pool.acquire();
    const waiting = pool.acquire();
    pool.fail(new KbError('HSM_UNAVAILABLE'));
    await assert.rejects(waiting, (e: unknown) => e instanceof KbError && e.code === 'HSM_UNAVAILABLE');
    await assert.rejects(
      pool.acquire(),
      (e: unknown) => e instanceof KbError && e.code === 'HSM_UNAVAILABLE',
    );
    pool.release('a');
    assert.deepEqual(pool.freeItems(), ['a'], 'released sessions are kept for closing');
  });
});
