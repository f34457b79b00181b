import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRecord } from '../../bench/lib/aggregate.ts';
import { latencyPercentiles, percentile, relativeSpread, spreadOf } from '../../bench/lib/stats.ts';
import { meta, sample } from './bench-fixtures.ts';

test('percentile interpolates between closest ranks', () => {
  const cases: { name: string; data: number[]; p: number; want: number }[] = [
    { name: 'single value', data: [7], p: 99, want: 7 },
    { name: 'median of odd count', data: [1, 2, 3], p: 50, want: 2 },
    { name: 'median of even count', data: [1, 2, 3, 4], p: 50, want: 2.5 },
    { name: 'p0 is the minimum', data: [3, 5, 9], p: 0, want: 3 },
    { name: 'p100 is the maximum', data: [3, 5, 9], p: 100, want: 9 },
    { name: 'p90 of 0..10', data: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], p: 90, want: 9 },
    { name: 'p99 of 1..100', data: Array.from({ length: 100 }, (_, i) => i + 1), p: 99, want: 99.01 },
  ];
  for (const c of cases) {
    const got = percentile(c.data, c.p);
    assert.ok(
      Math.abs(got - c.want) < 1e-9,
      `${c.name}: percentile([${c.data.length} values], ${c.p}) = ${got}, want ${c.want}`,
    );
  }
  assert.ok(Number.isNaN(percentile([], 50)), 'percentile of nothing should be NaN');
});

test('spreadOf gives median, min, max and quartiles; relativeSpread is (max-min)/median', () => {
  const cases: {
    name: string;
    values: number[];
    want: { median: number; min: number; max: number; q1: number; q3: number; n: number };
    rel: number;
  }[] = [
    {
      name: 'one run has no spread',
      values: [100],
      want: { median: 100, min: 100, max: 100, q1: 100, q3: 100, n: 1 },
      rel: 0,
    },
    {
      name: 'three runs: quartiles are min/max',
      values: [90, 110, 100],
      want: { median: 100, min: 90, max: 110, q1: 90, q3: 110, n: 3 },
      rel: 0.2,
    },
    {
      name: 'five runs: real quartiles',
      values: [5, 1, 4, 2, 3],
      want: { median: 3, min: 1, max: 5, q1: 2, q3: 4, n: 5 },
      rel: 4 / 3,
    },
    {
      name: 'NaN runs are ignored',
      values: [Number.NaN, 10, 20],
      want: { median: 15, min: 10, max: 20, q1: 10, q3: 20, n: 2 },
      rel: 10 / 15,
    },
  ];
  for (const c of cases) {
    const got = spreadOf(c.values);
    assert.deepEqual(got, c.want, `${c.name}: spreadOf(${JSON.stringify(c.values)})`);
    assert.ok(
      Math.abs(relativeSpread(got) - c.rel) < 1e-9,
      `${c.name}: relativeSpread = ${relativeSpread(got)}, want ${c.rel}`,
    );
  }
});

test('latencyPercentiles does not reorder the caller’s samples', () => {
  const samples = Float64Array.from([30, 10, 20]);
  const p = latencyPercentiles(samples);
  assert.deepEqual([...samples], [30, 10, 20], 'samples were sorted in place');
  assert.equal(p.p50Us, 20);
});

test('buildRecord summarises runs and notes failed calls', () => {
  const r = buildRecord(meta('encrypt-1k', 'daemon'), 16, [
    sample(1000),
    sample(1200, { errors: 2 }),
    sample(1100),
  ]);
  assert.equal(r.throughput.median, 1100);
  assert.equal(r.throughput.min, 1000);
  assert.equal(r.throughput.max, 1200);
  assert.equal(r.serverCpuUsPerOp?.median, 100);
  assert.equal(r.runs.length, 3);
  assert.match(r.notes ?? '', /2 failed calls/, `notes: ${r.notes}`);
});
