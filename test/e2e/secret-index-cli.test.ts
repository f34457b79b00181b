/**
 * `keybroker secret ...` and `keybroker index ...` against a running daemon, as a user runs
 * them: secret values come from stdin or a file (an argument carrying a value is refused), get
 * writes the exact bytes; index definitions as the admin identity, tokens as the service.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT, startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
let d: DaemonHandle;

function kb(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args, '--data-dir', d.dataDir], { input, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}
const json = (b: Buffer) => JSON.parse(b.toString('utf8')) as Record<string, unknown>;

before(async () => {
  d = await startDaemon();
});
after(async () => {
  assert.equal(await d.stop(), 0);
  removeDataDir(d.dataDir);
});

test('secret put (stdin, file, --cas) | get (exact bytes, by version) | list | delete | undelete | destroy', () => {
  const put = kb(['secret', 'put', 'db/password', '--cas', '0'], Buffer.from('hunter2\n'));
  assert.equal(put.status, 0, put.stderr);
  assert.equal(json(put.stdout).version, 1);
  const file = join(d.dataDir, 'value.bin');
  writeFileSync(file, Buffer.from([0, 1, 2, 255]));
  assert.equal(kb(['secret', 'put', 'db/password', file]).status, 0);
  const stale = kb(['secret', 'put', 'db/password', '--cas', '1'], Buffer.from('x'));
  assert.equal(stale.status, 1);
  assert.match(stale.stderr, /FAILED_PRECONDITION/);
  assert.deepEqual([...kb(['secret', 'get', 'db/password']).stdout], [0, 1, 2, 255]);
  assert.equal(kb(['secret', 'get', 'db/password', '--secret-version', '1']).stdout.toString(), 'hunter2\n');
  const list = kb(['secret', 'list']);
  assert.equal(list.status, 0, list.stderr);
  assert.ok(!list.stdout.toString().includes('hunter2'));
  assert.equal((json(list.stdout).secrets as { name: string }[])[0]?.name, 'db/password');
  assert.equal(kb(['secret', 'delete', 'db/password']).status, 0);
  assert.equal(kb(['secret', 'get', 'db/password']).status, 1);
  assert.equal(kb(['secret', 'undelete', 'db/password']).status, 0);
  assert.equal(kb(['secret', 'get', 'db/password']).status, 0);
  const des = kb(['secret', 'destroy', 'db/password', '--versions', '1']);
  assert.equal(des.status, 0, des.stderr);
  assert.equal(kb(['secret', 'get', 'db/password', '--secret-version', '1']).status, 1);
});

test('a value on the command line is refused (usage error, nothing stored)', () => {
  const r = kb(['secret', 'put', 'argv-secret', '--value', 'hunter2'], Buffer.from(''));
  assert.equal(r.status, 2, r.stderr);
  assert.equal(kb(['secret', 'get', 'argv-secret']).status, 1);
});

test('index create | compute (stdin) | rotate | min-version | list', () => {
  const c = kb([
    'index',
    'create',
    'acme',
    'alpha',
    'email',
    '--normalize',
    'nfkc,lowercase,trim',
    '--output-bytes',
    '16',
  ]);
  assert.equal(c.status, 0, c.stderr);
  const t1 = kb(['index', 'compute', 'email'], Buffer.from(' Jane@Example.com\n'));
  assert.equal(t1.status, 0, t1.stderr);
  const t2 = kb(['index', 'compute', 'email'], Buffer.from('jane@example.com'));
  const tok = (r: { stdout: Buffer }) => json(r.stdout).tokens as { version: number; token: string }[];
  assert.equal(tok(t1)[0]?.token, tok(t2)[0]?.token);
  assert.equal(tok(t1)[0]?.token.length, 32, '16 bytes as hex');
  assert.equal(kb(['index', 'rotate', 'acme', 'alpha', 'email', '--output-bytes', '32']).status, 0);
  const q = kb(['index', 'compute', 'email', '--all-versions'], Buffer.from('jane@example.com'));
  assert.deepEqual(
    tok(q).map((t) => t.version),
    [2, 1],
  );
  assert.equal(tok(q)[1]?.token, tok(t2)[0]?.token);
  assert.equal(kb(['index', 'min-version', 'acme', 'alpha', 'email', '2']).status, 0);
  const l = kb(['index', 'list', 'acme', 'alpha']);
  assert.equal(l.status, 0, l.stderr);
  const idx = (json(l.stdout).indexes as { name: string; minVersion: number }[])[0];
  assert.deepEqual([idx?.name, idx?.minVersion], ['email', 2]);
  const bad = kb(['index', 'create', 'acme', 'alpha', 'x', '--normalize', 'upper', '--output-bytes', '16']);
  assert.equal(bad.status, 1);
});
