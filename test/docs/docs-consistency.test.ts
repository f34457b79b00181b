/**
 * The README and docs/ agree with the code: the README stays short and starts with the two
 * commands, every relative link resolves, the configuration table's rate-limit defaults are the
 * config schema's, `npm test` runs a script that exists, and `dev.sh` resolves KB_DATA_DIR the
 * way the daemon reads it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../support/softhsm-token.ts';
import { DEFAULT_CONFIG } from '../../daemon/src/config/config-schema.ts';
import { loadConfig } from '../../daemon/src/config/load-config.ts';

const read = (f: string) => readFileSync(join(REPO_ROOT, f), 'utf8');
const docs = ['README.md', ...readdirSync(join(REPO_ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

describe('README', () => {
  const readme = read('README.md');
  test('at most 300 lines', () => {
    assert.ok(readme.split('\n').length <= 300, `README.md has ${readme.split('\n').length} lines`);
  });
  test('the first commands are the two dev.sh commands', () => {
    const first = /```sh\n([\s\S]*?)```/.exec(readme);
    assert.ok(first, 'a first sh block');
    const cmds = first[1]!
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.replace(/#.*/, '').trim());
    assert.deepEqual(cmds, ['bash daemon/scripts/dev.sh run', 'bash daemon/scripts/dev.sh test']);
    assert.ok(readme.indexOf('```') < readme.indexOf('\n## '), 'the commands come before any section');
  });
  test('links to every file of docs/', () => {
    for (const f of docs.filter((d) => d !== 'README.md')) assert.ok(readme.includes(`](${f})`), f);
  });
});

describe('relative links resolve', () => {
  for (const f of docs) {
    test(f, () => {
      const missing: string[] = [];
      for (const m of read(f).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (target === '' || /^[a-z]+:/.test(target)) continue;
        if (!existsSync(join(REPO_ROOT, dirname(f), target))) missing.push(m[1]!);
      }
      assert.deepEqual(missing, []);
    });
  }
});

describe('configuration table', () => {
  const ops = read('docs/operators.md');
  /** The default cell of the table row whose key cell starts with `key`. */
  const row = (key: string): string[] => {
    const line = ops.split('\n').find((l) => l.startsWith(`| \`${key}\``));
    assert.ok(line, `row ${key}`);
    return line.split('|').map((c) => c.trim());
  };
  const nums = (cell: string) => cell.split(',').map((n) => Number(n.trim().replace(/_/g, '')));
  const r = DEFAULT_CONFIG.rateLimit;
  const cases: [string, number[]][] = [
    ['rateLimit.perIdentityPerSec', [r.perIdentityPerSec, r.perIdentityBurst]],
    ['rateLimit.perTenantPerSec', [r.perTenantPerSec, r.perTenantBurst]],
    ['rateLimit.adminPerSec', [r.adminPerSec, r.adminBurst]],
    ['rateLimit.refusedPerSec', [r.refusedPerSec, r.refusedBurst]],
    ['rateLimit.tenantOpsPerDay', [r.tenantOpsPerDay]],
  ];
  for (const [key, want] of cases) {
    test(`${key} default is the schema's`, () => assert.deepEqual(nums(row(key)[2]!), want));
  }
  test('no page states the RateLimiter fallbacks as the daemon default', () => {
    for (const f of docs) {
      for (const m of read(f).matchAll(/defaults? 2,000\/s/g)) assert.fail(`${f}: "${m[0]}"`);
    }
    const sec = read('docs/security-model.md');
    assert.match(sec, /20,000\/s burst 40,000 per identity, 50,000\/s burst 100,000 per tenant/);
    assert.equal(r.perIdentityPerSec, 20_000);
    assert.equal(r.perTenantPerSec, 50_000);
  });
});

describe('npm test', () => {
  test('runs a script that exists', () => {
    const script = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.test!;
    const file = script.split(/\s+/).find((w) => /\.(sh|ts|js)$/.test(w));
    assert.ok(file, script);
    assert.ok(existsSync(join(REPO_ROOT, file)), `${script}: ${file} does not exist`);
    assert.equal(script, 'bash daemon/scripts/dev.sh test');
  });
});

describe('KB_DATA_DIR: one directory for dev.sh and the daemon', () => {
  const dataDir = (cwd: string, value: string | undefined): string => {
    const env = { ...process.env };
    delete env.KB_DATA_DIR;
    if (value !== undefined) env.KB_DATA_DIR = value;
    return execFileSync('bash', [join(REPO_ROOT, 'daemon/scripts/dev.sh'), 'data-dir'], {
      cwd,
      env,
      encoding: 'utf8',
    }).trim();
  };
  const cases: { name: string; value: string | undefined; want: (cwd: string) => string }[] = [
    { name: 'unset: ./.data of the checkout', value: undefined, want: () => join(REPO_ROOT, '.data') },
    {
      name: 'relative: from the caller directory, made absolute',
      value: 'kb/data',
      want: (cwd) => join(cwd, 'kb/data'),
    },
    { name: 'relative with ..', value: '../x/data', want: (cwd) => join(dirname(cwd), 'x/data') },
    { name: 'absolute: as given', value: '/srv/kb-data', want: () => '/srv/kb-data' },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const cwd = mkdtempSync(join(tmpdir(), 'kb-datadir-'));
      try {
        assert.equal(dataDir(cwd, c.value), c.want(cwd));
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    });
  }
  test('the daemon reads the absolute KB_DATA_DIR dev.sh exports as its dataDir', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-datadir-'));
    try {
      const cfg = join(dir, 'keybroker.json');
      writeFileSync(cfg, JSON.stringify({ dataDir: '.' }));
      const abs = dataDir(dirname(dir), dir.split('/').pop()!);
      assert.equal(abs, dir);
      assert.equal(loadConfig(cfg, { KB_DATA_DIR: abs }).dataDir, dir);
      // What dev.sh used to pass on: a relative value nests under the config's directory.
      assert.equal(loadConfig(cfg, { KB_DATA_DIR: 'rel' }).dataDir, join(dir, 'rel'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
