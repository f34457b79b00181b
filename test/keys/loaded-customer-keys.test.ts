// LoadedCustomerKeys: which customers' keys are loaded, so a customer shred (or the sweep after
// another path shredded one) can zero them at once. Pure bookkeeping: no HSM below it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadedCustomerKeys } from '../../daemon/src/keys/loaded-customer-keys.ts';

test('note gathers key ids per customer; take forgets one customer and returns its ids', () => {
  const l = new LoadedCustomerKeys();
  l.note('acme', 't1', 'c1', 'k1');
  l.note('acme', 't1', 'c1', 'k2');
  l.note('acme', 't1', 'c1', 'k1');
  l.note('acme', 't1', 'c2', 'k3');
  l.note('acme', 't2', 'c1', 'k4');
  assert.equal(l.size, 3);
  const e = l.take('acme', 't1', 'c1');
  assert.deepEqual(
    [e?.org, e?.tenant, e?.customer, [...(e?.keyIds ?? [])]],
    ['acme', 't1', 'c1', ['k1', 'k2']],
  );
  assert.equal(l.take('acme', 't1', 'c1'), undefined, 'taken once');
  assert.deepEqual(
    [...(l.take('acme', 't2', 'c1')?.keyIds ?? [])],
    ['k4'],
    'another tenant, same customer name',
  );
  assert.equal(l.size, 1);
});

test('takeGone returns and forgets exactly the customers it is told are gone', () => {
  const l = new LoadedCustomerKeys();
  for (const c of ['c1', 'c2', 'c3']) l.note('acme', 't1', c, `${c}-key`);
  const gone = l.takeGone((e) => e.customer !== 'c2');
  assert.deepEqual(gone.map((e) => e.customer).sort(), ['c1', 'c3']);
  assert.equal(l.size, 1);
  assert.deepEqual(
    l.takeGone(() => false),
    [],
  );
  assert.equal(l.take('acme', 't1', 'c2')?.customer, 'c2');
});

test('bounded: past the limit the oldest customer is dropped (its keys then go at the cache TTL)', () => {
  const l = new LoadedCustomerKeys(2);
  l.note('acme', 't1', 'c1', 'k');
  l.note('acme', 't1', 'c2', 'k');
  l.note('acme', 't1', 'c3', 'k');
  assert.equal(l.size, 2);
  assert.equal(l.take('acme', 't1', 'c1'), undefined, 'the oldest was dropped');
  assert.ok(l.take('acme', 't1', 'c3'));
});
