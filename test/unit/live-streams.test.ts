// LiveStreams (keys/live-streams.ts): a shred aborts the open streams of its tenant or customer;
// finished, failed and abandoned streams leave the set (an abandoned one once collected).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LiveStreams } from '../../daemon/src/keys/live-streams.ts';

test('abort by tenant and by customer; later chunks fail with NOT_FOUND', () => {
  const s = new LiveStreams();
  const aborted: string[] = [];
  const a = s.track('acme/t1', 'c1', () => aborted.push('a'));
  const b = s.track('acme/t1', 'c2', () => aborted.push('b'));
  const c = s.track('acme/t2', 'c1', () => aborted.push('c'));
  assert.equal(s.abort('acme/t1', 'c1'), 1, 'customer abort');
  assert.deepEqual(aborted, ['a']);
  assert.throws(() => a.run(() => 1, false), /not found/i, 'a chunk after the abort');
  assert.equal(
    b.run(() => 2, false),
    2,
    'the other customer stream still works',
  );
  assert.equal(s.abort('acme/t1'), 1, 'tenant abort');
  assert.deepEqual(aborted, ['a', 'b']);
  assert.equal(
    c.run(() => 3, true),
    3,
    'another tenant is untouched',
  );
  assert.equal(s.size, 0, 'the finished stream left');
});

test('a stream that finishes or fails leaves; an abandoned one does not stay referenced', async () => {
  const s = new LiveStreams();
  s.track('acme/t1', 'c1', () => undefined).run(() => 1, true);
  const failing = s.track('acme/t1', 'c1', () => undefined);
  assert.throws(() =>
    failing.run(() => {
      throw new Error('bad chunk');
    }, false),
  );
  assert.equal(s.size, 0, 'finished and failed streams left');
  (() => void s.track('acme/t1', 'c1', () => undefined))(); // abandoned at once
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // deref() keeps a target alive until the end of the current job: collect in a fresh one.
  for (let i = 0; i < 10; i++) {
    await tick();
    gc();
    await tick();
    if (s.size === 0) break;
  }
  assert.equal(s.size, 0, 'an abandoned stream is collected');
});
