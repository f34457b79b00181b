/**
 * `keybroker backup` while the daemon serves, and `keybroker restore` of that backup into a
 * new data dir with the daemon's own HSM token: the CLI as an operator runs it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT, startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
let d: DaemonHandle;
let work: string;

function kb(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { timeout: 120_000, cwd: d.dataDir });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

before(async () => {
  d = await startDaemon();
  work = mkdtempSync(join(tmpdir(), 'kb-backup-cli-'));
});
after(async () => {
  assert.equal(await d.stop(), 0);
  removeDataDir(d.dataDir);
  rmSync(work, { recursive: true, force: true });
});

test('backup while serving, then restore into a new data dir: every tenant restored', async () => {
  const svc = d.client('service');
  await svc.secrets.unary('PutSecret', { name: 'db/url', value: Buffer.from('backup-cli-canary') });
  const out = join(work, 'b1');
  const config = join(d.dataDir, 'keybroker.json');
  const b = kb(['backup', '--config', config, '--out', out]);
  assert.equal(b.status, 0, b.stderr);
  const summary = JSON.parse(b.stdout) as { files: number; hsmToken: string };
  assert.ok(summary.files >= 2, b.stdout);
  assert.ok(existsSync(join(out, 'manifest.json')));
  const pin = readFileSync(join(d.dataDir, 'secrets/hsm-user.pin'), 'utf8').trim();
  assert.ok(!readFileSync(join(out, 'manifest.json'), 'utf8').includes(pin), 'the manifest holds the PIN');
  // The daemon keeps serving during and after the backup.
  assert.equal(
    (
      (await svc.secrets.unary<{ value: Buffer }>('GetSecret', { name: 'db/url' })).value as Buffer
    ).toString(),
    'backup-cli-canary',
  );
  const target = join(work, 'restored');
  const r = kb(['restore', out, '--config', config, '--target', target]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { restored: string[]; unrecoverable: string[] };
  assert.deepEqual(report.unrecoverable, []);
  assert.ok(report.restored.includes('acme/alpha'), r.stdout);
  const again = kb(['restore', out, '--config', config, '--target', target]);
  assert.equal(again.status, 1, 'a second restore into the same dir is refused');
  assert.match(again.stderr, /empty data dir/);
});
