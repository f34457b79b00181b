/**
 * The power-on self-test gates the daemon's start: with one known answer corrupted (test-build
 * hook KB_TEST_PQC_CORRUPT_KAT, honoured only with KB_TEST_HOOKS=1) the daemon never listens,
 * exits non-zero and names the failed algorithm; without it, the passing self-test is logged
 * before "listening".
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDataDir(d);
});

const CASES = [
  { name: 'ML-DSA-65 signature KAT', alg: 'ml-dsa-65' },
  { name: 'ML-KEM-768 shared-secret KAT', alg: 'ml-kem-768' },
  { name: 'X-Wing shared-secret KAT', alg: 'x-wing' },
];

for (const c of CASES) {
  test(`a corrupted ${c.name} stops the start with a clear message`, async () => {
    const dir = await initTestDataDir();
    dirs.push(dir);
    await assert.rejects(
      startDaemon({ dataDir: dir, env: { KB_TEST_PQC_CORRUPT_KAT: c.alg }, timeoutMs: 60_000 }),
      (err: Error) => {
        assert.match(err.message, /daemon exited \(1\)/, `${c.name}: exit code 1 before listening`);
        assert.match(
          err.message,
          /pqc power-on self-test failed: refusing to start/,
          `${c.name}: the message`,
        );
        assert.match(err.message, new RegExp(`${c.alg}/`), `${c.name}: names the failed algorithm`);
        assert.doesNotMatch(err.message, /"msg":"listening"/, `${c.name}: never listened`);
        return true;
      },
    );
  });
}

test('the passing self-test is logged before the daemon listens; the hook is ignored without KB_TEST_HOOKS', async () => {
  const d = await startDaemon({ env: { KB_TEST_HOOKS: '0', KB_TEST_PQC_CORRUPT_KAT: 'ml-dsa-65' } });
  dirs.push(d.dataDir);
  try {
    const st = d.lines.findIndex((l) => l.msg === 'pqc power-on self-test passed');
    const listening = d.lines.findIndex((l) => l.msg === 'listening');
    assert.ok(st >= 0 && st < listening, `self-test line (${st}) before listening (${listening})`);
    const line = d.lines[st] ?? {};
    assert.deepEqual(line.engines, ['openssl', 'liboqs'], 'both engines self-tested');
    assert.ok(Number(line.checks) >= 40, `checks run: ${String(line.checks)}`);
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
