// Review H3: the shipped layouts keep the SoftHSM2 token (the root keys) outside the backed-up
// data dir. `keybroker init` puts it in a sibling dir (or --token-dir, never one inside); the
// systemd layout uses /var/lib/keybroker-token, apart from the state dir /var/lib/keybroker.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { initDataDir } from '../../daemon/src/cli/init-command.ts';
import { loadConfig } from '../../daemon/src/config/load-config.ts';
import { isInside, softhsmTokenDir } from '../../daemon/src/hsm/token-layout.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';

const root = mkdtempSync(join(tmpdir(), 'kb-layout-'));
after(() => rmSync(root, { recursive: true, force: true }));

const args = (dir: string, extra: Record<string, unknown> = {}) => ({
  'data-dir': dir,
  org: 'acme',
  tenant: 'alpha',
  admin: 'root',
  service: 'app',
  'pki-alg': 'ecdsa-p256' as const,
  port: 0,
  'metrics-port': 0,
  'token-label': 'kb-layout',
  force: false,
  ...extra,
});

test('keybroker init puts the token outside the data dir (default sibling, or --token-dir)', async () => {
  for (const [name, dir, extra] of [
    ['default', join(root, 'a', 'data'), {}],
    ['--token-dir', join(root, 'b', 'data'), { 'token-dir': join(root, 'b', 'hsm') }],
  ] as const) {
    const r = await initDataDir(args(dir, extra));
    const cfg = loadConfig(r.configFile);
    const tokenDir = softhsmTokenDir(cfg.hsm.softhsmConf);
    assert.ok(
      tokenDir !== undefined && existsSync(tokenDir),
      `${name}: token dir ${String(tokenDir)} exists`,
    );
    assert.equal(isInside(tokenDir, cfg.dataDir), false, `${name}: token ${tokenDir} inside ${cfg.dataDir}`);
    assert.equal(existsSync(join(dir, 'softhsm')), false, `${name}: no token files in the data dir`);
  }
});

test('keybroker init refuses a --token-dir inside the data dir', async () => {
  const dir = join(root, 'c', 'data');
  await assert.rejects(
    initDataDir(args(dir, { 'token-dir': join(dir, 'softhsm') })),
    /must lie outside the data dir/,
  );
});

test('the systemd layout keeps the token out of the state dir and creates it apart', () => {
  const sys = join(REPO_ROOT, 'systemd');
  const tokenDir = softhsmTokenDir(join(sys, 'etc/softhsm2.conf'));
  const dataDir = (JSON.parse(readFileSync(join(sys, 'etc/keybroker.json'), 'utf8')) as { dataDir: string })
    .dataDir;
  assert.equal(tokenDir, '/var/lib/keybroker-token/tokens');
  assert.equal(isInside(tokenDir, dataDir), false, `token ${tokenDir} inside the state dir ${dataDir}`);
  const tmpfiles = readFileSync(join(sys, 'tmpfiles.d/keybroker.conf'), 'utf8');
  assert.match(tmpfiles, /^d\s+\/var\/lib\/keybroker-token\/tokens\s+0700 keybroker keybroker/m);
  assert.doesNotMatch(tmpfiles, /\/var\/lib\/keybroker\/softhsm/, 'no token dir under the state dir');
  assert.match(
    readFileSync(join(sys, 'keybroker.service'), 'utf8'),
    /^StateDirectory=keybroker keybroker-token$/m,
  );
});
