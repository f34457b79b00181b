// The key list a shred receipt carries: sorted by key id, bounded, always counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  keysDetail,
  NO_SHRED_KEYS,
  RECEIPT_MAX_KEYS,
  type DestroyedKey,
} from '../../daemon/src/keys/shredder.ts';

const key = (keyId: string): DestroyedKey => ({ keyId, algorithm: 'ml-dsa-65', versions: [1, 2] });

test('no keys: the labels only, no key list and no count', () => {
  assert.deepEqual(keysDetail(NO_SHRED_KEYS), { hsmKeyLabels: [] });
});

test('keys are sorted by id (code units, as the canonical JSON compares) and counted', () => {
  const d = keysDetail({ hsmKeyLabels: ['kb-x'], keys: [key('b'), key('B'), key('a-2'), key('a')] });
  assert.deepEqual(
    d.keys?.map((k) => k.keyId),
    ['B', 'a', 'a-2', 'b'],
  );
  assert.equal(d.keyCount, 4);
  assert.deepEqual(d.hsmKeyLabels, ['kb-x']);
});

test(`at most ${RECEIPT_MAX_KEYS} keys are listed; the count is the total`, () => {
  const n = RECEIPT_MAX_KEYS + 7;
  const keys = Array.from({ length: n }, (_, i) => key(`k-${String(n - i).padStart(5, '0')}`));
  const d = keysDetail({ hsmKeyLabels: [], keys });
  assert.equal(d.keys?.length, RECEIPT_MAX_KEYS);
  assert.equal(d.keyCount, n);
  assert.equal(d.keys?.[0]?.keyId, 'k-00001', 'the first ids by sort order are the ones listed');
  assert.equal(d.keys?.at(-1)?.keyId, `k-${String(RECEIPT_MAX_KEYS).padStart(5, '0')}`);
});
