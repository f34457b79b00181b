// Grouping of pending usage counts by tenant file, and the bound on closed files a flush opens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { filesThisTick, unflushedByFile } from '../../daemon/src/keys/unflushed-by-file.ts';
import type { TenantRow } from '../../daemon/src/store/registry-rows.ts';

const row = (fileName: string) => ({ fileName }) as TenantRow;

test('unflushedByFile groups by tenant file and drops entries with nothing to write', () => {
  const m = new Map([
    ['a/1', { t: row('a.db'), unflushed: 2 }],
    ['a/2', { t: row('a.db'), unflushed: 0 }],
    ['b/1', { t: row('b.db'), unflushed: 1 }],
    ['a/3', { t: row('a.db'), unflushed: 5 }],
  ]);
  const g = unflushedByFile(m);
  assert.deepEqual(
    [...g].map(([f, l]) => [f, l.map((c) => c.unflushed)]),
    [
      ['a.db', [2, 5]],
      ['b.db', [1]],
    ],
  );
  assert.deepEqual([...m.keys()], ['a/1', 'b/1', 'a/3'], 'the empty entry is gone');
});

test('filesThisTick: every open file, closed ones only up to the budget, in order', () => {
  const byFile = new Map(['o1', 'c1', 'c2', 'o2', 'c3', 'c4'].map((f) => [f, [f]]));
  const isOpen = (f: string) => f.startsWith('o');
  const names = (budget: number) => [...filesThisTick(byFile, isOpen, budget)].map((l) => l[0]);
  assert.deepEqual(names(0), ['o1', 'o2']);
  assert.deepEqual(names(2), ['o1', 'c1', 'c2', 'o2']);
  assert.deepEqual(names(Number.POSITIVE_INFINITY), ['o1', 'c1', 'c2', 'o2', 'c3', 'c4']);
});
