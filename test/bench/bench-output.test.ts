import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { attachRatios } from '../../bench/lib/aggregate.ts';
import { DELEGATED_SCRIPTS, delegateTimeoutMs, parseJsonRecords } from '../../bench/lib/delegates.ts';
import { renderSummary } from '../../bench/lib/markdown.ts';
import { mergeResults } from '../../bench/lib/merge.ts';
import { niceStep, renderChart } from '../../bench/lib/svg-chart.ts';
import { evaluateTargets } from '../../bench/lib/targets.ts';
import { keysBatchItems } from '../../bench/load/keys-ops.ts';
import { SCENARIOS, selectScenarios, unknownScenarioNames } from '../../bench/scenarios.ts';
import { meta, record, resultsFile } from './bench-fixtures.ts';

const enc = meta('encrypt-1k', 'daemon', { ceilings: { echo: 'echo-1k', inProcess: 'inproc-encrypt-1k' } });
const dec = meta('decrypt-1k', 'daemon', { ceilings: { echo: 'echo-1k', inProcess: 'inproc-decrypt-1k' } });
const echo = meta('echo-1k', 'ceiling-echo');
const ipEnc = meta('inproc-encrypt-1k', 'ceiling-in-process');
const ipDec = meta('inproc-decrypt-1k', 'ceiling-in-process');

function sweep() {
  const records = [
    record(echo, 1, [2000]),
    record(echo, 16, [6000]),
    record(ipEnc, 1, [20000]),
    record(ipDec, 1, [25000]),
    record(enc, 1, [1500]),
    record(enc, 16, [4500]),
    record(dec, 1, [1400]),
    record(dec, 16, [3600]),
  ];
  return attachRatios(records, [enc, dec, echo, ipEnc, ipDec]);
}

test('ratios are read against the echo at the same concurrency and the in-process rate', () => {
  const r = sweep();
  const cases: { name: string; scenario: string; c: number; echo: number; inProcess: number }[] = [
    { name: 'encrypt c=1', scenario: 'encrypt-1k', c: 1, echo: 0.75, inProcess: 0.075 },
    { name: 'encrypt c=16', scenario: 'encrypt-1k', c: 16, echo: 0.75, inProcess: 0.225 },
    { name: 'decrypt c=16', scenario: 'decrypt-1k', c: 16, echo: 0.6, inProcess: 0.144 },
  ];
  for (const c of cases) {
    const rec = r.find((x) => x.scenario === c.scenario && x.concurrency === c.c);
    assert.ok(rec?.ratios, `${c.name}: no ratios on ${c.scenario}@${c.c}`);
    assert.ok(
      Math.abs((rec.ratios.echo ?? 0) - c.echo) < 1e-9,
      `${c.name}: echo ratio ${rec.ratios.echo}, want ${c.echo}`,
    );
    assert.ok(
      Math.abs((rec.ratios.inProcess ?? 0) - c.inProcess) < 1e-9,
      `${c.name}: in-process ratio ${rec.ratios.inProcess}, want ${c.inProcess}`,
    );
  }
});

test('an echo re-measured beside the daemon (echo-1k-paired) is the ceiling when present, in ratios and targets', () => {
  // The echo phase ran fast (6000 at c=16); beside the daemon the host was slower (5000).
  const paired = meta('echo-1k-paired', 'ceiling-echo');
  const pairedEnc = { ...enc, pairedEcho: 'echo-1k-paired' };
  const pairedDec = { ...dec, pairedEcho: 'echo-1k-paired' };
  // Another scenario read against echo-1k but not paired keeps the echo phase's ceiling.
  const other = meta('rewrap-1k', 'daemon', { ceilings: { echo: 'echo-1k' } });
  const records = attachRatios(
    [...sweep(), record(paired, 1, [1800]), record(paired, 16, [5000]), record(other, 16, [3000])],
    [pairedEnc, pairedDec, echo, paired, ipEnc, ipDec, other],
  );
  const ratio = (n: string) => records.find((x) => x.scenario === n && x.concurrency === 16)?.ratios?.echo;
  assert.ok(
    Math.abs((ratio('encrypt-1k') ?? 0) - 0.9) < 1e-9,
    `paired ratio ${ratio('encrypt-1k')}, want 0.9`,
  );
  assert.ok(
    Math.abs((ratio('rewrap-1k') ?? 0) - 0.5) < 1e-9,
    `unpaired ratio ${ratio('rewrap-1k')}, want 0.5`,
  );
  const t = new Map(evaluateTargets(records).map((x) => [x.name, x]));
  const thr = t.get('encrypt-1k throughput vs echo-1k');
  assert.equal(thr?.pass, true);
  assert.match(thr?.measured ?? '', /vs echo-1k-paired 5,000 \(c=16\) = 90%/);
  assert.match(t.get('decrypt-1k throughput vs echo-1k')?.measured ?? '', /= 72%/);
  assert.match(t.get('encrypt-1k server CPU per request')?.measured ?? '', /\(echo-1k-paired /);
});

test('an in-process ceiling measured beside a batch scenario is its ceiling, in ratios and the EncryptBatch target', () => {
  const batch = meta('encrypt-batch-100x1k', 'daemon', {
    unit: 'items/s',
    ceilings: { inProcess: 'inproc-encrypt-1k' },
    pairedInProcess: 'inproc-encrypt-1k-paired',
  });
  const pairedIp = meta('inproc-encrypt-1k-paired', 'ceiling-in-process');
  // The in-process phase ran fast (20000/s); beside the batch the host was slower (15000/s).
  const records = attachRatios(
    [...sweep(), record(pairedIp, 1, [15000]), record(batch, 16, [12000])],
    [enc, dec, echo, ipEnc, ipDec, pairedIp, batch],
  );
  const b = records.find((x) => x.scenario === 'encrypt-batch-100x1k');
  assert.ok(Math.abs((b?.ratios?.inProcess ?? 0) - 0.8) < 1e-9, `ratio ${b?.ratios?.inProcess}, want 0.8`);
  const t = evaluateTargets(records).find(
    (x) => x.name === 'encrypt-batch-100x1k items/s vs in-process encrypt',
  );
  assert.equal(t?.pass, true);
  assert.match(t?.measured ?? '', /vs inproc-encrypt-1k-paired 15,000 ops\/s = 80%/);
});

test('every paired ceiling names a scenario of the same daemon phase that measures it', () => {
  const byName = new Map(SCENARIOS.map((s) => [s.name, s]));
  const pairs = SCENARIOS.flatMap((s) => [
    ...(s.pairedEcho ? [{ s, p: byName.get(s.pairedEcho), kind: 'ceiling-echo' }] : []),
    ...(s.pairedInProcess ? [{ s, p: byName.get(s.pairedInProcess), kind: 'ceiling-in-process' }] : []),
  ]);
  assert.ok(pairs.length >= 6, `pairs: ${pairs.map((x) => x.s.name).join(', ')}`);
  for (const { s, p, kind } of pairs) {
    assert.ok(p, `${s.name}: its paired ceiling exists`);
    assert.equal(p.kind, kind, `${s.name} -> ${p.name}: kind`);
    assert.equal(p.phase, s.phase, `${s.name} -> ${p.name}: same phase`);
    assert.ok(
      kind === 'ceiling-echo' ? p.op !== undefined : p.inProcess?.name === p.name,
      `${p.name} measures`,
    );
  }
  assert.deepEqual(
    SCENARIOS.filter((s) => s.pairedInProcess !== undefined)
      .map((s) => s.name)
      .sort(),
    [
      'blind-index-compute-batch256',
      'blind-index-compute-batch64',
      'encrypt-batch-100x1k',
      'pqc-mldsa65-sign-batch64',
      'pqc-mldsa65-verify-batch64',
      'pqc-mlkem768-decapsulate-batch256',
      'pqc-mlkem768-decapsulate-batch64',
      'pqc-mlkem768-encapsulate-batch256',
      'pqc-mlkem768-encapsulate-batch64',
    ],
  );
});

test('the suite pairs echo-1k-paired with Encrypt and Decrypt 1 KiB, in the daemon phase, on the same sweep', () => {
  const byName = new Map(SCENARIOS.map((s) => [s.name, s]));
  const e = byName.get('echo-1k-paired');
  assert.equal(e?.phase, 'daemon');
  assert.equal(e?.op?.kind, 'echo');
  for (const n of ['encrypt-1k', 'decrypt-1k']) {
    const d = byName.get(n);
    assert.equal(d?.pairedEcho, 'echo-1k-paired', `${n} is paired`);
    assert.deepEqual(d?.concurrency, e?.concurrency, `${n}: same sweep as its echo`);
  }
  assert.deepEqual(
    SCENARIOS.filter((s) => s.pairedEcho !== undefined).map((s) => s.name),
    ['encrypt-1k', 'decrypt-1k'],
  );
});

test('targets: throughput ≥ 70% of echo passes at 75% and fails at 60%; missing inputs say what is missing', () => {
  const t = evaluateTargets(sweep());
  const byName = new Map(t.map((x) => [x.name, x]));
  const cases: { name: string; pass: boolean | undefined; measured: RegExp }[] = [
    { name: 'encrypt-1k throughput vs echo-1k', pass: true, measured: /= 75%/ },
    { name: 'decrypt-1k throughput vs echo-1k', pass: false, measured: /= 60%/ },
    // echo CPU 100 µs/op, in-process CPU 150 µs/op: limit 100 + 225 = 325 ≥ the daemon's 100.
    { name: 'encrypt-1k server CPU per request', pass: true, measured: /limit 325/ },
    {
      name: 'encrypt-batch-100x1k items/s vs in-process encrypt',
      pass: undefined,
      measured: /encrypt-batch-100x1k missing/,
    },
    {
      name: 'encrypt-stream-64m MiB/s vs in-process AES-GCM',
      pass: undefined,
      measured: /encrypt-stream-64m missing/,
    },
  ];
  for (const c of cases) {
    const got = byName.get(c.name);
    assert.ok(got, `evaluateTargets() has no check named ${c.name}; got ${[...byName.keys()].join(', ')}`);
    assert.equal(got.pass, c.pass, `${c.name}: pass=${got.pass}, want ${c.pass} (${got.measured})`);
    assert.match(got.measured, c.measured, c.name);
  }
});

test('post-quantum targets: 80% of the in-process rate (paired for batches), and beside a miss the most any server could reach', () => {
  const echo32 = meta('echo-32', 'ceiling-echo');
  const ip = meta('inproc-mlkem768-decapsulate', 'ceiling-in-process');
  const ipPaired = meta('inproc-mlkem768-decapsulate-paired', 'ceiling-in-process');
  const single = meta('pqc-mlkem768-decapsulate', 'daemon');
  const batch = meta('pqc-mlkem768-decapsulate-batch64', 'daemon', { unit: 'items/s' });
  const verify = meta('pqc-mldsa65-verify', 'daemon');
  // Echo calls cost 100 µs of server CPU, an in-process operation 150 µs (the fixtures' values).
  const records = [
    record(echo32, 16, [5000]),
    record(ip, 1, [20000]),
    record(ipPaired, 1, [16000]),
    record(single, 16, [4000]),
    record(batch, 64, [14000]),
    record(verify, 16, [1000]),
  ];
  const t = new Map(evaluateTargets(records).map((x) => [x.name, x]));
  const s = t.get('pqc-mlkem768-decapsulate vs in-process');
  assert.equal(s?.pass, false);
  // 150 / (150 + 100) = 60%: below 80% whatever the daemon does.
  assert.match(s?.measured ?? '', /vs 20,000 ops\/s = 20%; at most 60% for any server/);
  const b = t.get('pqc-mlkem768-decapsulate-batch64 vs in-process');
  assert.equal(b?.pass, true, b?.measured);
  assert.match(
    b?.measured ?? '',
    /14,000 items\/s \(c=64\) vs inproc-mlkem768-decapsulate-paired 16,000 ops\/s = 88%$/,
  );
  const v = t.get('pqc-mldsa65-verify vs in-process');
  assert.equal(v?.pass, undefined);
  assert.match(v?.measured ?? '', /inproc-mldsa65-verify missing/);
  assert.equal(t.get('pqc-mldsa65-sign vs in-process'), undefined, 'no row for a scenario not run');
  const miss = evaluateTargets([...records.slice(0, 3), record(batch, 64, [8000])]).find(
    (x) => x.name === 'pqc-mlkem768-decapsulate-batch64 vs in-process',
  );
  assert.equal(miss?.pass, false);
  // The call's 100 µs shared by 64 items: 150 / (150 + 1.5625) = 99%.
  assert.match(miss?.measured ?? '', /= 50%; at most 99% for any server .*shared by 64 items/);
  // A 256-item batch is read against the same paired ceiling; its items per call come from its name.
  const big = meta('pqc-mlkem768-decapsulate-batch256', 'daemon', { unit: 'items/s' });
  const rows = evaluateTargets([...records.slice(0, 3), record(batch, 64, [8000]), record(big, 64, [4000])]);
  const b256 = rows.find((x) => x.name === 'pqc-mlkem768-decapsulate-batch256 vs in-process');
  assert.equal(b256?.pass, false);
  assert.match(
    b256?.measured ?? '',
    /vs inproc-mlkem768-decapsulate-paired 16,000 ops\/s = 25%; .*shared by 256 items/,
  );
  const names = rows.map((x) => x.name).filter((n) => n.startsWith('pqc-'));
  assert.deepEqual(names, [
    'pqc-mlkem768-decapsulate-batch64 vs in-process',
    'pqc-mlkem768-decapsulate-batch256 vs in-process',
    'pqc-mlkem768-decapsulate vs in-process',
  ]);
});

test('a keys op counts the items of its -batchN suffix; every batch op of the catalogue has one', () => {
  assert.equal(keysBatchItems('mlkem768-decapsulate-batch256'), 256);
  assert.equal(keysBatchItems('mldsa65-sign-batch64'), 64);
  assert.equal(keysBatchItems('mlkem768-decapsulate'), 1);
  for (const s of SCENARIOS.filter((x) => x.op?.kind === 'keys' && x.unit === 'items/s'))
    assert.ok(keysBatchItems(s.name) > 1, `${s.name}: items/s without a batch size in its name`);
});

test('summary.md has the machine, the targets and one row per record with its ratios', () => {
  const records = sweep();
  const md = renderSummary({ ...resultsFile(records), targets: evaluateTargets(records) });
  for (const want of [
    /^# keybroker bench: quick run/m,
    /Test CPU, 2 cores/,
    /X25519MLKEM768/,
    /\| encrypt-1k throughput vs echo-1k \|.*\| pass \|/,
    /\| decrypt-1k throughput vs echo-1k \|.*\| \*\*FAIL\*\* \|/,
    /\| encrypt-1k \| 16 \| 4,500 req\/s \| 200 \|.*\| 75% \| 23% \| – \|/,
  ]) {
    assert.match(md, want, `renderSummary() lacks ${want}`);
  }
  assert.doesNotMatch(md, /NaN|undefined/, 'summary.md prints NaN or undefined');
});

test('chart.svg is well-formed, has a panel per group and draws ceilings', () => {
  const records = [
    ...sweep(),
    record(
      meta('echo-batch-100x1k', 'ceiling-echo', { group: 'batch', unit: 'items/s' }),
      4,
      [9000, 10000, 11000],
    ),
  ];
  const svg = renderChart(resultsFile(records));
  assert.match(
    svg,
    /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/,
  );
  assert.ok(svg.trimEnd().endsWith('</svg>'), 'svg not closed');
  assert.equal((svg.match(/<g>/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, 'unbalanced <g>');
  assert.doesNotMatch(svg, /NaN|undefined|Infinity/, 'chart has non-numbers');
  for (const want of [
    '>1 KiB<',
    '>batch<',
    'encrypt-1k',
    'echo-1k (ceiling)',
    'stroke-dasharray="6 4"',
    'inproc-encrypt-1k (ceiling, 1 core)',
  ]) {
    assert.ok(svg.includes(want), `renderChart() lacks ${want}`);
  }
});

const dir = mkdtempSync(join(tmpdir(), 'kb-bench-svg-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('chart.svg renders with rsvg-convert when it is installed', (t) => {
  if (spawnSync('rsvg-convert', ['--version']).status !== 0) {
    t.skip('rsvg-convert not installed (Debian: librsvg2-bin)');
    return;
  }
  const svgPath = join(dir, 'chart.svg');
  writeFileSync(svgPath, renderChart(resultsFile(sweep())));
  const r = spawnSync('rsvg-convert', ['-o', join(dir, 'chart.png'), svgPath], { encoding: 'utf8' });
  assert.equal(r.status, 0, `rsvg-convert failed: ${r.stderr}`);
  assert.ok(statSync(join(dir, 'chart.png')).size > 1000, 'PNG suspiciously small');
});

test('niceStep picks 1/2/5 × 10^k', () => {
  const cases: [number, number][] = [
    [10, 2],
    [100, 20],
    [7000, 2000],
    [0.3, 0.1],
  ];
  for (const [range, want] of cases) assert.equal(niceStep(range), want, `niceStep(${range})`);
});

test('per-area script output parses as one JSON document or as JSON lines', () => {
  const cases: { name: string; stdout: string; want: unknown[] }[] = [
    { name: 'empty', stdout: '', want: [] },
    { name: 'one array', stdout: '[{"a":1},{"a":2}]\n', want: [{ a: 1 }, { a: 2 }] },
    { name: 'one object', stdout: '{"a":1}', want: [{ a: 1 }] },
    {
      name: 'JSON lines among text',
      stdout: 'starting\n{"a":1}\nnot json {\n{"a":2}\n[{"a":3}]\n',
      want: [{ a: 1 }, { a: 2 }, { a: 3 }],
    },
  ];
  for (const c of cases) assert.deepEqual(parseJsonRecords(c.stdout), c.want, c.name);
});

test('--only selects by exact name or prefix*, and quick/full variants', () => {
  const names = (only: string[] | undefined, quick: boolean) =>
    selectScenarios(only, quick).map((s) => s.name);
  assert.deepEqual(names(['echo-1k'], true), ['echo-1k']);
  assert.ok(
    names(['tenants-*'], true).every((n) => n.startsWith('tenants-1k-')),
    'quick runs the 1k-tenant stand-in only',
  );
  assert.ok(
    names(['tenants-*'], false).some((n) => n.startsWith('tenants-100k-')),
    'full runs 100k tenants',
  );
  assert.ok(
    names(undefined, false).includes('tenants-100k-create-tenants-bulk'),
    'the default full suite runs the 100k-tenant phase (provisioned through CreateTenants)',
  );
  assert.ok(
    !names(['tenants-*'], false).some((n) => n.startsWith('tenants-1k-')),
    'full skips the quick stand-in',
  );
  assert.deepEqual(unknownScenarioNames(['echo-1k', 'nope', 'zz*']), ['nope', 'zz*']);
  assert.equal(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length, 'duplicate scenario names');
  for (const s of SCENARIOS) {
    for (const c of Object.values(s.ceilings ?? {})) {
      assert.ok(
        SCENARIOS.some((x) => x.name === c),
        `${s.name} names an unknown ceiling ${c}`,
      );
    }
  }
});

test('--merge replaces the re-run scenarios, keeps the rest and says what was merged', () => {
  const base = { ...resultsFile(sweep()), missing: [{ scenario: 'decrypt-1k', reason: 'was broken' }] };
  const later = { ...resultsFile([record(dec, 16, [5000])]), startedAt: '2026-11-22T07:00:00.000Z' };
  const m = mergeResults(base, later, [enc, dec, echo, ipEnc, ipDec]);
  const dec16 = m.records.filter((r) => r.scenario === 'decrypt-1k');
  assert.deepEqual(
    dec16.map((r) => `${r.concurrency}:${r.throughput.median}`),
    ['16:5000'],
    'decrypt-1k records after the merge',
  );
  assert.ok(
    m.records.some((r) => r.scenario === 'encrypt-1k' && r.concurrency === 1),
    'encrypt-1k was dropped',
  );
  assert.equal(m.missing.length, 0, `missing after the merge: ${JSON.stringify(m.missing)}`);
  assert.deepEqual(m.merged?.[0]?.scenarios, ['decrypt-1k']);
  assert.match(renderSummary(m), /re-measured 2026-11-22 07:00 UTC .* merged in: decrypt-1k/);
});

test('delegated scripts share what is left of the budget by how long each takes, within 20-300 s', () => {
  const all = [...DELEGATED_SCRIPTS];
  // The 18:34 run had 402 s left for all five: an equal share cut hierarchy-bench (64 s) at 63 s.
  const hierarchy = delegateTimeoutMs(all.slice(1), 371_000, false);
  assert.ok(hierarchy > 120_000, `hierarchy-bench gets ${hierarchy} ms of 371 s, more than twice its 64 s`);
  assert.ok(
    delegateTimeoutMs(['rate-limit-bench.ts'], 371_000, false) === 300_000,
    'the last script gets what is left, at most 300 s',
  );
  assert.equal(delegateTimeoutMs(all, 0, false), 20_000, 'never under 20 s, even past the budget');
  assert.equal(delegateTimeoutMs(all, 3_600_000, true), 45_000, 'at most 45 s in quick mode');
  // Each script taking exactly its typical time, from a budget of their sum.
  let left = 184_000;
  const shares = all.map((_, i) => {
    const t = delegateTimeoutMs(all.slice(i), left, false);
    left -= [31_000, 64_000, 46_000, 35_000, 8_000][i] ?? 0;
    return t;
  });
  assert.deepEqual(shares, [31_000, 64_000, 46_000, 35_000, 20_000], 'a budget of exactly their typical sum');
});

test('--merge of a re-run delegated script replaces that script only, in place', () => {
  const d = (script: string, status: 'ok' | 'timeout') => ({ script, status, durationS: 1, records: [] });
  const base = {
    ...resultsFile(sweep()),
    delegated: [d('hsm-bench.ts', 'ok'), d('hierarchy-bench.ts', 'timeout'), d('pqc-bench.ts', 'ok')],
  };
  const later = { ...resultsFile([]), delegated: [d('hierarchy-bench.ts', 'ok')] };
  const m = mergeResults(base, later, [enc, dec, echo, ipEnc, ipDec]);
  assert.deepEqual(
    m.delegated.map((x) => `${x.script}:${x.status}`),
    ['hsm-bench.ts:ok', 'hierarchy-bench.ts:ok', 'pqc-bench.ts:ok'],
  );
  assert.deepEqual(m.merged?.[0]?.scenarios, ['hierarchy-bench.ts']);
  assert.equal(m.records.length, base.records.length, 'no scenario record was dropped');
});
