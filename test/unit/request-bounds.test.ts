// Field checks at the API boundary: each bad value is refused with the code the gRPC mapping
// expects (INVALID_ARGUMENT, or TOO_LARGE past a bound), and good values come back unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { batchCount, batchItems, bytesField } from '../../daemon/src/api/request-bounds.ts';

test('batchCount: 1..max items; missing, zero, fractional or non-numbers are refused', () => {
  assert.equal(batchCount('count', 1, 64), 1);
  assert.equal(batchCount('count', 64, 64), 64);
  for (const [v, code, msg] of [
    [undefined, 'INVALID_ARGUMENT', /count is required/],
    [null, 'INVALID_ARGUMENT', /count is required/],
    [0, 'INVALID_ARGUMENT', /count must be at least 1/],
    [-3, 'INVALID_ARGUMENT', /count must be at least 1/],
    [2.5, 'INVALID_ARGUMENT', /count must be a whole number/],
    ['4', 'INVALID_ARGUMENT', /count must be a whole number/],
    [Number.NaN, 'INVALID_ARGUMENT', /count must be a whole number/],
    [65, 'TOO_LARGE', /count exceeds 64 items/],
  ] as const)
    assert.throws(() => batchCount('count', v, 64), { code, message: msg }, `count ${String(v)}`);
});

test('batchItems and bytesField: empty lists and oversized fields are refused, never echoing the value', () => {
  assert.throws(() => batchItems('items', [], 4), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => batchItems('items', [1, 2, 3, 4, 5], 4), { code: 'TOO_LARGE' });
  assert.deepEqual(batchItems('items', [1, 2], 4), [1, 2]);
  const secret = Buffer.from('do-not-echo-me');
  assert.throws(
    () => bytesField('plaintext', secret, 4),
    (e: Error) => (e as { code?: string }).code === 'TOO_LARGE' && !e.message.includes('do-not-echo-me'),
  );
  assert.equal(bytesField('aad', undefined, 4).length, 0);
});
