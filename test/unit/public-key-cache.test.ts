// The parsed-public-key cache: one parse per (algorithm, key bytes), never another key's value,
// even when the same array is looked up again after its bytes were changed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PublicKeyCache } from '../../daemon/src/pqc/public-key-cache.ts';

test('one make per (algorithm, bytes), from the same array or an equal copy', () => {
  const cache = new PublicKeyCache<string>();
  let makes = 0;
  const make = (v: string) => () => {
    makes++;
    return v;
  };
  const key = Uint8Array.from([1, 2, 3, 4]);
  assert.equal(cache.get('ml-dsa-65', key, make('a')), 'a');
  assert.equal(cache.get('ml-dsa-65', key, make('x')), 'a', 'same array: cached');
  assert.equal(cache.get('ml-dsa-65', Uint8Array.from(key), make('x')), 'a', 'equal copy: cached');
  assert.equal(makes, 1);
  assert.equal(cache.get('ml-kem-768', key, make('b')), 'b', 'another algorithm: its own entry');
  assert.equal(makes, 2);
});

test('an array whose bytes changed never gets the value of its old bytes', () => {
  const cache = new PublicKeyCache<string>();
  const key = Uint8Array.from([9, 9, 9]);
  assert.equal(
    cache.get('ed25519', key, () => 'old'),
    'old',
  );
  key[1] = 8;
  assert.equal(
    cache.get('ed25519', key, () => 'new'),
    'new',
    'changed bytes: parsed again',
  );
  key[1] = 9;
  assert.equal(
    cache.get('ed25519', key, () => 'again'),
    'old',
    'the old bytes again: their entry',
  );
});

test('bounded: the least recently used entry goes first', () => {
  const cache = new PublicKeyCache<number>(2);
  const k = (n: number) => Uint8Array.of(n);
  cache.get('a', k(1), () => 1);
  cache.get('a', k(2), () => 2);
  cache.get('a', k(1), () => -1); // touches 1 (an equal copy, not the same array)
  cache.get('a', k(3), () => 3); // evicts 2
  assert.equal(cache.size, 2);
  assert.equal(
    cache.get('a', k(1), () => -1),
    1,
  );
  assert.equal(
    cache.get('a', k(2), () => 22),
    22,
    '2 was evicted and parsed again',
  );
});
