/**
 * The data-plane power-on self-test gates the daemon's start (review I2): with a wrong AES-GCM or
 * HKDF primitive injected (test-build hook KB_TEST_DATA_PLANE_BROKEN, honoured only with
 * KB_TEST_HOOKS=1) the daemon never listens and exits 1 naming the check; without it, the passing
 * self-test is logged before "listening".
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDataDir(d);
});

for (const [broken, named] of [
  ['hkdf', /hkdf-sha256/],
  ['aes-gcm', /aes-256-gcm seal/],
] as const) {
  test(`a wrong ${broken} stops the start with a clear message`, async () => {
    const dir = await initTestDataDir();
    dirs.push(dir);
    await assert.rejects(
      startDaemon({ dataDir: dir, env: { KB_TEST_DATA_PLANE_BROKEN: broken }, timeoutMs: 60_000 }),
      (err: Error) => {
        assert.match(err.message, /daemon exited \(1\)/, 'exit code 1 before listening');
        assert.match(err.message, /data-plane power-on self-test failed: refusing to start/);
        assert.match(err.message, named, 'names the failed check');
        assert.doesNotMatch(err.message, /"msg":"listening"/, 'never listened');
        return true;
      },
    );
  });
}

test('the passing data-plane self-test is logged before the daemon listens; the hook needs KB_TEST_HOOKS', async () => {
  const d = await startDaemon({ env: { KB_TEST_HOOKS: '0', KB_TEST_DATA_PLANE_BROKEN: 'hkdf' } });
  dirs.push(d.dataDir);
  try {
    const st = d.lines.findIndex((l) => l.msg === 'data-plane power-on self-test passed');
    const listening = d.lines.findIndex((l) => l.msg === 'listening');
    assert.ok(st >= 0 && st < listening, `self-test line (${st}) before listening (${listening})`);
    assert.equal(d.lines[st]?.checks, 12);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
