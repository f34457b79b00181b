/**
 * KB_HSM_PIN does not outlive its reading (review L2): the daemon logs in with it, then neither
 * the helper programs it runs (`systemd-notify`, `sync -f`) nor anything later sees it. The
 * helpers are replaced on PATH by scripts that record their environment; /proc/<pid>/environ
 * cannot show this (it is the environment the process started with).
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';

test('KB_HSM_PIN logs in, then systemd-notify and sync -f run without it', async () => {
  const work = mkdtempSync(join(tmpdir(), 'kb-pinenv-'));
  const bin = join(work, 'bin');
  const dumps = join(work, 'dumps');
  mkdirSync(bin);
  mkdirSync(dumps);
  // Each fake records its environment, then does the real thing (sync) or nothing (notify).
  const fake = (name: string, then: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\nenv > "${dumps}/${name}.$$"\n${then}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  fake('systemd-notify', 'exit 0');
  fake('sync', 'exec /usr/bin/sync "$@"');
  const dataDir = await initTestDataDir();
  const pinFile = join(dataDir, 'secrets/hsm-user.pin');
  const pin = readFileSync(pinFile, 'utf8').trim();
  // Without the file, the only way in is the environment.
  renameSync(pinFile, `${pinFile}.away`);
  const d = await startDaemon({
    dataDir,
    env: {
      KB_HSM_PIN: pin,
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      NOTIFY_SOCKET: join(work, 'none.sock'),
    },
  });
  try {
    // CreateTenants makes its new tenant files durable with one `sync -f`.
    await d.client('admin').admin.unary('CreateTenants', { org: 'acme', tenants: ['pin-t1', 'pin-t2'] });
    const files = readdirSync(dumps);
    for (const helper of ['systemd-notify', 'sync']) {
      const mine = files.filter((f) => f.startsWith(`${helper}.`));
      assert.ok(mine.length > 0, `${helper} ran (dumps: ${files.join(', ')})`);
      for (const f of mine) {
        const env = readFileSync(join(dumps, f), 'utf8');
        assert.doesNotMatch(env, /KB_HSM_PIN/, `${f}: no KB_HSM_PIN`);
        assert.ok(!env.includes(pin), `${f}: the PIN value appears nowhere`);
        assert.doesNotMatch(env, /^KB_/m, `${f}: no KB_* variable at all`);
      }
    }
    const notify = readFileSync(
      join(dumps, files.find((f) => f.startsWith('systemd-notify.')) ?? ''),
      'utf8',
    );
    assert.match(notify, /^NOTIFY_SOCKET=/m, 'systemd-notify still gets NOTIFY_SOCKET');
    assert.ok(!d.output.includes(pin), 'the PIN is not in the daemon output');
  } finally {
    assert.equal(await d.stop(), 0, 'daemon exit code');
    removeDataDir(dataDir);
    rmSync(work, { recursive: true, force: true });
  }
});
