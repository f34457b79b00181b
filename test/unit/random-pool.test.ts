// The public-random pool: every request gets fresh bytes (no slice handed out twice, also across
// refills), only the asked range is written, and bad sizes or ranges are refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fillPublicRandom } from '../../daemon/src/util/random-pool.ts';

test('44-byte requests across many refills never repeat and look random', () => {
  const seen = new Set<string>();
  const counts = new Array<number>(256).fill(0);
  for (let i = 0; i < 2000; i++) {
    const b = new Uint8Array(44);
    fillPublicRandom(b, 0, 44);
    const hex = Buffer.from(b).toString('hex');
    assert.ok(!seen.has(hex), `request ${i} repeated an earlier one`);
    seen.add(hex);
    for (const x of b) counts[x] = (counts[x] ?? 0) + 1;
  }
  // 88,000 bytes: each value expected ~344 times; a stuck or zeroed pool would be far off.
  const min = Math.min(...counts);
  const max = Math.max(...counts);
  assert.ok(min > 200 && max < 500, `byte value counts ${min}..${max}, wanted all near 344`);
});

test('only the requested range is written', () => {
  const b = new Uint8Array(100).fill(0xaa);
  fillPublicRandom(b, 10, 44);
  assert.ok(
    b.subarray(0, 10).every((x) => x === 0xaa),
    'bytes before the range untouched',
  );
  assert.ok(
    b.subarray(54).every((x) => x === 0xaa),
    'bytes after the range untouched',
  );
  assert.ok(
    b.subarray(10, 54).some((x) => x !== 0xaa),
    'the range was filled',
  );
});

test('sizes over the pool, negative sizes and out-of-bounds ranges are refused', () => {
  const cases: [string, Uint8Array, number, number][] = [
    ['over the pool', new Uint8Array(5000), 0, 4097],
    ['negative size', new Uint8Array(8), 0, -1],
    ['past the end', new Uint8Array(8), 4, 5],
    ['negative offset', new Uint8Array(8), -1, 2],
  ];
  for (const [name, out, offset, n] of cases) {
    assert.throws(() => fillPublicRandom(out, offset, n), RangeError, name);
  }
});
