/**
 * The operations kit in systemd/monitoring/: the alert rules pass `promtool check rules` and
 * their unit tests (`promtool test rules`, promtool from Debian's prometheus package, extracted by
 * daemon/scripts/bootstrap.sh kb_promtool); the Grafana dashboard is well-formed; and every metric
 * name the rules and the dashboard use is exported by a real running daemon (its /metrics),
 * including the certificate expiry gauge with the server certificate and an org CA.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const DIR = join(REPO_ROOT, 'systemd/monitoring');
const RULES = join(DIR, 'keybroker-alerts.yml');
const RULE_TESTS = join(DIR, 'keybroker-alerts.test.yml');
const DASHBOARD = join(DIR, 'keybroker-dashboard.json');

function promtool(): string {
  const local = join(REPO_ROOT, '.runtime/tools/promtool');
  if (existsSync(local)) return local;
  const onPath = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
  assert.ok(
    onPath !== '',
    'promtool not found: run `bash daemon/scripts/dev.sh test` (kb_promtool extracts it)',
  );
  return onPath;
}

function run(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(promtool(), args, { cwd: DIR, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { x: number; y: number; w: number; h: number };
  readonly targets?: { expr: string; refId: string }[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  uid: string;
  title: string;
  panels: Panel[];
};
const exprs = (): string[] => [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
  ...[...readFileSync(RULES, 'utf8').matchAll(/^\s*expr: (?:\|\n)?([\s\S]*?)(?=^\s*(?:for|labels):)/gm)].map(
    (m) => m[1] ?? '',
  ),
];

describe('alert rules', () => {
  test('promtool check rules', () => {
    const r = run(['check', 'rules', RULES]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });

  test('promtool test rules (HSM down, degraded, audit unhealthy, certificate expiry, quota)', () => {
    const r = run(['test', 'rules', RULE_TESTS]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  test('a rule that cannot fire is caught: the unit tests fail on a changed threshold', async () => {
    // Guard against unit tests that pass whatever the rules say.
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const tmp = mkdtempSync(join(tmpdir(), 'kb-rules-'));
    try {
      writeFileSync(
        join(tmp, 'keybroker-alerts.yml'),
        readFileSync(RULES, 'utf8').replace('< 14 * 86400', '< 1 * 86400'),
      );
      writeFileSync(join(tmp, 'keybroker-alerts.test.yml'), readFileSync(RULE_TESTS, 'utf8'));
      const r = spawnSync(promtool(), ['test', 'rules', 'keybroker-alerts.test.yml'], {
        cwd: tmp,
        encoding: 'utf8',
      });
      assert.notEqual(r.status, 0, 'promtool test rules passed with a changed threshold');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('dashboard', () => {
  test('well-formed: unique panel ids, every non-row panel queries, datasource is an input', () => {
    assert.equal(dashboard.uid, 'keybroker-overview');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids unique');
    for (const p of dashboard.panels) {
      assert.ok(p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: gridPos within 24 columns`);
      if (p.type === 'row') continue;
      assert.ok((p.targets ?? []).length > 0, `${p.title}: has queries`);
      for (const t of p.targets ?? [])
        assert.match(t.expr, /keybroker_/, `${p.title}: queries keybroker metrics`);
    }
    const titles = dashboard.panels.map((p) => p.title).join(' | ');
    for (const want of [
      'Ready',
      'Degraded',
      'Audit log healthy',
      'Certificates',
      'Refused by rate limits',
      'latency',
    ])
      assert.ok(titles.includes(want), `dashboard has a "${want}" panel: ${titles}`);
  });
});

describe('metric names against a running daemon', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemon();
    const admin = d.client('admin');
    await admin.certificates.unary('CreateCa', { org: 'acme', algorithm: 'CA_ALGORITHM_ECDSA_P256' });
    await d.client('service').crypto.unary('Encrypt', { plaintext: Buffer.from('x') });
  });
  after(async () => {
    assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
    removeDataDir(d.dataDir);
  });

  test('every keybroker_* name in the rules and the dashboard is exported', async () => {
    const { status, body } = await d.metrics();
    assert.equal(status, 200);
    const exported = new Set<string>();
    for (const m of body.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
      const [, name, type] = m;
      if (name === undefined) continue;
      exported.add(name);
      if (type === 'histogram' || type === 'summary')
        for (const s of ['_bucket', '_sum', '_count']) exported.add(`${name}${s}`);
    }
    const used = new Set(exprs().flatMap((e) => [...e.matchAll(/\bkeybroker_[a-z0-9_]+/g)].map((m) => m[0])));
    assert.ok(used.size >= 15, `names found in the kit: ${[...used].join(', ')}`);
    const missing = [...used].filter((n) => !exported.has(n));
    assert.deepEqual(missing, [], 'metric names used by the kit but not exported by the daemon');
  });

  test('the certificate expiry gauge names the server certificate and the org CA, in the future', async () => {
    const { body } = await d.metrics();
    const now = Date.now() / 1000;
    const rows = [
      ...body.matchAll(/^keybroker_certificate_not_after_seconds\{cert="(\w+)",subject="([^"]*)"\} (\d+)$/gm),
    ];
    const kinds = rows.map((r) => r[1]);
    assert.ok(
      kinds.includes('server'),
      `server certificate exported: ${JSON.stringify(rows.map((r) => r[0]))}`,
    );
    assert.ok(kinds.includes('org_ca'), `org CA exported: ${JSON.stringify(rows.map((r) => r[0]))}`);
    for (const r of rows) assert.ok(Number(r[3]) > now, `${r[0]}: notAfter in the future`);
  });
});
