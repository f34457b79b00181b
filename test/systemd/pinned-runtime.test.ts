/**
 * daemon/scripts/pinned-runtime.sh: the runtime bootstrap.sh uses and install.sh copies. A
 * machine whose Node on PATH is already the pinned version has no .runtime; install.sh must then
 * take that Node, not fail with "no runtime".
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, realpathSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { REPO_ROOT, describeRun, run, tempDir } from './systemd-tools.ts';

const SCRIPT = join(REPO_ROOT, 'daemon/scripts/pinned-runtime.sh');
/** The tests run on the pinned runtime: its install prefix. */
const PINNED_PREFIX = dirname(dirname(realpathSync(process.execPath)));
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

describe('pinned-runtime.sh', () => {
  const tmp = tempDir('kb-pinned-runtime-');
  after(() => tmp.cleanup());
  let n = 0;

  /** A checkout with only the lock file, and a bin directory to put first on PATH. */
  function checkout(): { root: string; bin: string } {
    const root = join(tmp.dir, `c${n++}`);
    mkdirSync(join(root, 'daemon/scripts'), { recursive: true });
    copyFileSync(
      join(REPO_ROOT, 'daemon/scripts/runtime.lock.json'),
      join(root, 'daemon/scripts/runtime.lock.json'),
    );
    const bin = join(root, 'host-bin');
    mkdirSync(bin);
    return { root, bin };
  }
  /** A `node` that reports another version. */
  function otherNode(path: string): void {
    writeFileSync(path, '#!/bin/sh\necho 20.19.2\n');
    chmodSync(path, 0o755);
  }
  const find = (root: string, bin: string) =>
    run('bash', [SCRIPT, root], { env: { PATH: `${bin}:${SYSTEM_PATH}` } });

  test('.runtime, when it holds the pinned version', () => {
    const { root, bin } = checkout();
    mkdirSync(join(root, '.runtime/bin'), { recursive: true });
    symlinkSync(process.execPath, join(root, '.runtime/bin/node'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = find(root, bin);
    assert.equal(r.status, 0, describeRun('pinned-runtime.sh', r));
    assert.equal(r.stdout.trim(), join(root, '.runtime'));
  });

  test('no .runtime: the install prefix of a pinned-version Node on PATH (through its symlink)', () => {
    const { root, bin } = checkout();
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = find(root, bin);
    assert.equal(r.status, 0, describeRun('pinned-runtime.sh', r));
    assert.equal(r.stdout.trim(), PINNED_PREFIX);
  });

  test('a .runtime of another version is passed over for the pinned Node on PATH', () => {
    const { root, bin } = checkout();
    mkdirSync(join(root, '.runtime/bin'), { recursive: true });
    otherNode(join(root, '.runtime/bin/node'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = find(root, bin);
    assert.equal(r.status, 0, describeRun('pinned-runtime.sh', r));
    assert.equal(r.stdout.trim(), PINNED_PREFIX);
  });

  test('neither: exit 1 and nothing on stdout (install.sh then names the missing .runtime)', () => {
    const { root, bin } = checkout();
    otherNode(join(bin, 'node'));
    const r = find(root, bin);
    assert.equal(r.status, 1, describeRun('pinned-runtime.sh', r));
    assert.equal(r.stdout, '');
  });

  test('no lock file: exit 1 with the reason on stderr', () => {
    const r = run('bash', [SCRIPT, join(tmp.dir, 'nowhere')], { env: { PATH: SYSTEM_PATH } });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /no .*runtime\.lock\.json/);
  });
});
