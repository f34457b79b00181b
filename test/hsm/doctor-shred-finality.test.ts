// `keybroker doctor` and shred finality (review H3) on a real SoftHSM2 token: it warns that the
// token is a software token, and warns when the token directory lies inside the data dir (a
// backup of the data dir would carry the root keys); the warnings never fail the report.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT, createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';

let token: TestToken;
const elsewhere = mkdtempSync(join(tmpdir(), 'kb-doctor-data-'));
before(() => {
  token = createTestToken('kb-doctor-h3');
});
after(() => {
  token.cleanup();
  rmSync(elsewhere, { recursive: true, force: true });
});

function doctor(dataDir: string): { status: number | null; out: string } {
  const r = spawnSync(
    process.execPath,
    [
      join(REPO_ROOT, 'daemon/src/cli/main.ts'),
      'doctor',
      '--profile',
      'softhsm2',
      '--token-label',
      token.label,
      '--softhsm-conf',
      token.conf,
      '--data-dir',
      dataDir,
    ],
    { env: { ...process.env, KB_HSM_PIN: token.pin }, encoding: 'utf8', timeout: 120_000 },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('doctor warns about a software token and a token dir inside the data dir', () => {
  for (const [name, dataDir, tokenLine] of [
    ['token dir inside the data dir', token.dir, 'WARN  token directory:'],
    ['token dir outside the data dir', elsewhere, 'PASS  token directory:'],
  ] as const) {
    const r = doctor(dataDir);
    assert.equal(r.status, 0, `${name}: warnings must not fail doctor:\n${r.out}`);
    for (const line of ['WARN  software token: SoftHSM', tokenLine, 'warnings)'])
      assert.ok(r.out.includes(line), `${name}: missing "${line}" in:\n${r.out}`);
    assert.ok(!r.out.includes(token.pin), 'the PIN appeared in the report');
  }
});
