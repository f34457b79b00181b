/**
 * The CLI against a running daemon, as a user runs it: client commands read files or stdin and
 * find the daemon and certificates through the data dir; errors go to stderr with exit 1;
 * usage and config errors exit 2.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT, startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
let d: DaemonHandle;

function kb(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

before(async () => {
  d = await startDaemon();
});
after(async () => {
  assert.equal(await d.stop(), 0);
  removeDataDir(d.dataDir);
});

test('encrypt | decrypt through stdin/stdout, with AAD; wrong AAD fails with exit 1', () => {
  const dd = ['--data-dir', d.dataDir];
  const ct = kb(['encrypt', ...dd, '--aad', 'user-17'], Buffer.from('jane@example.com'));
  assert.equal(ct.status, 0, ct.stderr);
  const pt = kb(['decrypt', ...dd, '--aad', 'user-17'], ct.stdout);
  assert.equal(pt.status, 0, pt.stderr);
  assert.equal(pt.stdout.toString(), 'jane@example.com');
  const bad = kb(['decrypt', ...dd, '--aad', 'user-18'], ct.stdout);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /Decrypt failed: INVALID_ARGUMENT: decryption failed/);
});

test('streaming encrypt/decrypt of a file', () => {
  const data = randomBytes(300 * 1024);
  const inFile = join(d.dataDir, 'in.bin');
  const sealed = join(d.dataDir, 'in.kbs');
  const back = join(d.dataDir, 'back.bin');
  writeFileSync(inFile, data);
  assert.equal(kb(['encrypt', '--data-dir', d.dataDir, '--stream', inFile, '-o', sealed]).status, 0);
  const r = kb(['decrypt', '--data-dir', d.dataDir, '--stream', sealed, '-o', back]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(readFileSync(back).equals(data), 'streamed round trip');
});

test('admin commands print JSON; data-key generate/decrypt round trip', () => {
  const c = kb(['admin', 'tenant', 'create', 'acme', 'gamma', '--data-dir', d.dataDir]);
  assert.equal(c.status, 0, c.stderr);
  assert.equal((JSON.parse(c.stdout.toString()) as { tenant: { tenant: string } }).tenant.tenant, 'gamma');
  const l = kb(['admin', 'tenant', 'list', 'acme', '--data-dir', d.dataDir]);
  const names = (JSON.parse(l.stdout.toString()) as { tenants: { tenant: string }[] }).tenants.map(
    (t) => t.tenant,
  );
  assert.ok(names.includes('gamma') && names.includes('alpha'), names.join(','));
  const dup = kb(['admin', 'tenant', 'create', 'acme', 'gamma', '--data-dir', d.dataDir]);
  assert.equal(dup.status, 1);
  assert.match(dup.stderr, /ALREADY_EXISTS/);
  const g = kb(['data-key', 'generate', '--aad', 'obj', '--data-dir', d.dataDir]);
  assert.equal(g.status, 0, g.stderr);
  const k = JSON.parse(g.stdout.toString()) as { plaintextKey: string; wrappedKey: string };
  const u = kb(['data-key', 'decrypt', '--aad', 'obj', '--wrapped', k.wrappedKey, '--data-dir', d.dataDir]);
  assert.equal(u.status, 0, u.stderr);
  assert.equal(u.stdout.toString().trim(), k.plaintextKey);
});

test('usage errors exit 2; a bad config exits 2 naming the field', () => {
  assert.equal(kb(['admin', 'tenant', 'create', '--data-dir', d.dataDir]).status, 2, 'missing positionals');
  const cfg = join(d.dataDir, 'bad.json');
  writeFileSync(cfg, JSON.stringify({ listen: { port: 'x' } }));
  const r = kb(['serve', '--config', cfg]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /listen\.port: must be integer/);
});
