/**
 * systemd/install.sh and uninstall.sh into temporary DESTDIRs: the resulting tree (files,
 * modes, production dependencies only, a working pinned runtime), PREFIX, upgrades that keep
 * the operator's config, and the sysusers.d/tmpfiles.d entries applied with --root.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../daemon/src/cli/daemon-node-flags.ts';
import { after, before, describe, test } from 'node:test';
import {
  REPO_ROOT,
  SYSTEMD_DIR,
  describeRun,
  hasTool,
  installInto,
  run,
  systemdVersion,
  tempDir,
} from './systemd-tools.ts';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'daemon/scripts/runtime.lock.json'), 'utf8')) as {
  version: string;
};

const modeOf = (p: string) => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');

describe('install.sh into a DESTDIR (PREFIX=/usr)', () => {
  let dest: ReturnType<typeof tempDir>;
  let lib: string;
  let output: string;
  before(() => {
    dest = tempDir('kb-destdir-');
    output = installInto(dest.dir).stdout;
    lib = join(dest.dir, 'usr/lib/keybroker');
  });
  after(() => dest.cleanup());

  const expected: [string, string][] = [
    ['usr/lib/keybroker', '0755'],
    ['usr/lib/keybroker/runtime/bin/node', '0755'],
    ['usr/lib/keybroker/daemon/src/cli/main.ts', '0644'],
    ['usr/lib/keybroker/package.json', '0644'],
    ['usr/lib/keybroker/hsm-profiles/softhsm2.json', '0644'],
    ['usr/lib/keybroker/softhsm-fixtures/create-token.sh', '0755'],
    ['usr/lib/keybroker/proto', '0755'],
    ['usr/lib/keybroker/node_modules', '0755'],
    ['usr/lib/keybroker/systemd/drop-ins/opencryptoki.conf', '0644'],
    ['usr/lib/keybroker/systemd/uninstall.sh', '0755'],
    ['usr/lib/keybroker/systemd/sysusers.d/keybroker-opencryptoki.conf', '0644'],
    ['usr/bin/keybroker', '0755'],
    ['usr/lib/systemd/system/keybroker.service', '0644'],
    ['usr/lib/sysusers.d/keybroker.conf', '0644'],
    ['usr/lib/tmpfiles.d/keybroker.conf', '0644'],
    ['etc/keybroker', '0750'],
    ['etc/keybroker/tls', '0750'],
    ['etc/keybroker/pins', '0700'],
    ['etc/keybroker/keybroker.json', '0640'],
    ['etc/keybroker/keybroker.env', '0640'],
    ['etc/keybroker/softhsm2.conf', '0640'],
    ['var/lib/keybroker', '0700'],
    ['var/lib/keybroker-token/tokens', '0700'],
    ['var/log/keybroker', '0750'],
  ];
  for (const [path, mode] of expected) {
    test(`${path} exists with mode ${mode}`, () => {
      const full = join(dest.dir, path);
      assert.ok(existsSync(full), `install.sh did not create ${path}`);
      assert.equal(modeOf(full), mode, `mode of ${path}`);
    });
  }

  test('the restart-backoff drop-in is installed only for systemd >= 254', () => {
    const dropIn = join(dest.dir, 'usr/lib/systemd/system/keybroker.service.d/restart-backoff.conf');
    const want = systemdVersion() >= 254;
    assert.equal(
      existsSync(dropIn),
      want,
      `systemd ${systemdVersion()}: restart-backoff.conf present should be ${want}`,
    );
  });

  test('nothing in the tree is group- or world-writable', () => {
    const r = run('find', [dest.dir, '-mindepth', '1', '-perm', '/022', '-not', '-type', 'l']);
    assert.equal(r.stdout.trim(), '', `writable by group/others:\n${r.stdout}`);
  });

  test('every production dependency is present and no dev dependency is', () => {
    const nm = join(lib, 'node_modules');
    for (const dep of Object.keys(pkg.dependencies))
      assert.ok(existsSync(join(nm, dep)), `missing dependency ${dep}`);
    for (const dev of Object.keys(pkg.devDependencies)) {
      // @types/node is also a runtime dependency of protobufjs (it stays, and is harmless).
      if (dev === '@types/node') continue;
      assert.ok(!existsSync(join(nm, dev)), `dev dependency ${dev} was installed`);
    }
    assert.ok(!existsSync(join(nm, '.bin/tsc')) && !existsSync(join(nm, '.bin/eslint')), 'dev tools in .bin');
    const empty = readdirSync(nm).filter((d) => d.startsWith('@') && readdirSync(join(nm, d)).length === 0);
    assert.deepEqual(empty, [], 'empty scope folders left by npm prune');
  });

  test('no tests, benches, build headers or checkout state are installed', () => {
    const r = run('find', [
      lib,
      '-path',
      `${lib}/node_modules`,
      '-prune',
      '-o',
      '-name',
      '*.test.ts',
      '-print',
    ]);
    assert.equal(r.stdout.trim(), '', `test files installed:\n${r.stdout}`);
    for (const p of [
      'test',
      'bench',
      '.git',
      '.runtime',
      'runtime/include',
      'runtime/share',
      '.npmrc',
      'node_modules/.kb-installed',
    ]) {
      assert.ok(!existsSync(join(lib, p)), `${p} should not be installed`);
    }
  });

  test('the installed runtime is the pinned Node version', () => {
    const r = run(join(lib, 'runtime/bin/node'), ['--version']);
    assert.equal(r.stdout.trim(), `v${lock.version}`, describeRun('runtime/bin/node --version', r));
  });

  test('the native addons load from the installed tree with the installed runtime', () => {
    const script = [
      "const { default: Database } = await import('better-sqlite3');",
      "const db = new Database(':memory:'); const v = db.prepare('select sqlite_version() v').get().v; db.close();",
      "const { PKCS11 } = await import('pkcs11js'); const p = new PKCS11(); p.load('/usr/lib/softhsm/libsofthsm2.so');",
      'p.C_Initialize({ flags: 2 }); const info = p.C_GetInfo(); p.C_Finalize();',
      'console.log(JSON.stringify({ sqlite: v, pkcs11: info.manufacturerID.trim() }));',
    ].join('\n');
    const r = run('sh', ['-c', `cd "${lib}" && ./runtime/bin/node --input-type=module -e "$0"`, script]);
    assert.equal(r.status, 0, describeRun('import better-sqlite3 and pkcs11js from the installed tree', r));
    const out = JSON.parse(r.stdout) as { sqlite: string; pkcs11: string };
    assert.match(out.sqlite, /^3\./);
    assert.match(out.pkcs11, /SoftHSM/);
  });

  test('the CLI starts from the installed tree (all registered commands import)', () => {
    const r = run(join(lib, 'runtime/bin/node'), [join(lib, 'daemon/src/cli/main.ts'), '--help']);
    assert.equal(r.status, 0, describeRun('installed main.ts --help', r));
    // Once the daemon's serve command is registered, --help must list it.
    if (existsSync(join(REPO_ROOT, 'daemon/src/cli/serve-command.ts'))) assert.match(r.stdout, /\bserve\b/);
  });

  test('the unit starts the installed runtime with the daemon node flags and entry point', () => {
    const unit = readFileSync(join(dest.dir, 'usr/lib/systemd/system/keybroker.service'), 'utf8');
    const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.split(' ') ?? [];
    const [node, ...rest] = exec;
    const flags = rest.slice(0, DAEMON_NODE_FLAGS.length);
    const [entry, ...args] = rest.slice(DAEMON_NODE_FLAGS.length);
    assert.deepEqual(flags, DAEMON_NODE_FLAGS);
    assert.deepEqual(args, ['serve', '--config', '/etc/keybroker/keybroker.json']);
    for (const p of [node, entry])
      assert.ok(p !== undefined && existsSync(join(dest.dir, p)), `ExecStart names ${p}, not installed`);
    const cred = /^LoadCredential=hsm-user\.pin:(.*)$/m.exec(unit)?.[1];
    const config = JSON.parse(readFileSync(join(dest.dir, 'etc/keybroker/keybroker.json'), 'utf8')) as {
      hsm: { pinFile: string };
    };
    assert.equal(cred, '/etc/keybroker/pins/hsm-user.pin');
    assert.equal(config.hsm.pinFile, '/run/credentials/keybroker.service/hsm-user.pin');
  });

  test('the wrapper and the next steps name the installed paths', () => {
    const wrapper = readFileSync(join(dest.dir, 'usr/bin/keybroker'), 'utf8');
    assert.ok(
      wrapper.includes(
        `exec /usr/lib/keybroker/runtime/bin/node ${DAEMON_NODE_FLAGS.join(' ')} /usr/lib/keybroker/daemon/src/cli/main.ts "$@"`,
      ),
      wrapper,
    );
    for (const step of [
      'systemd-sysusers',
      'systemd-tmpfiles --create',
      'systemctl enable --now keybroker',
    ]) {
      assert.ok(output.includes(step), `next steps do not mention ${step}:\n${output}`);
    }
  });

  test('the example config is accepted by the daemon config loader', async (t) => {
    const loader = join(REPO_ROOT, 'daemon/src/config/load-config.ts');
    if (!existsSync(loader)) {
      t.skip('daemon/src/config/load-config.ts has not landed');
      return;
    }
    const { loadConfig } = (await import(loader)) as {
      loadConfig: (p: string, env: NodeJS.ProcessEnv) => unknown;
    };
    assert.doesNotThrow(() => loadConfig(join(SYSTEMD_DIR, 'etc/keybroker.json'), {}));
  });

  test('sysusers.d and tmpfiles.d entries apply with --root', { skip: !hasTool('systemd-sysusers') }, () => {
    const su = run('systemd-sysusers', [
      `--root=${dest.dir}`,
      join(dest.dir, 'usr/lib/sysusers.d/keybroker.conf'),
    ]);
    assert.equal(su.status, 0, describeRun('systemd-sysusers --root', su));
    const passwd = readFileSync(join(dest.dir, 'etc/passwd'), 'utf8');
    const entry = /^keybroker:x:(\d+):(\d+):[^:]*:([^:]*):(.*)$/m.exec(passwd);
    assert.ok(entry, `no keybroker entry in ${passwd}`);
    const [, uid, gid, home, shell] = entry;
    assert.ok(Number(uid) > 0 && Number(uid) < 1000, `uid ${uid} is not a system uid`);
    assert.equal(home, '/var/lib/keybroker');
    assert.equal(shell, '/usr/sbin/nologin');

    const tf = run('systemd-tmpfiles', [
      '--create',
      `--root=${dest.dir}`,
      join(dest.dir, 'usr/lib/tmpfiles.d/keybroker.conf'),
    ]);
    assert.equal(tf.status, 0, describeRun('systemd-tmpfiles --create --root', tf));
    const owners: [string, string, number, number][] = [
      ['etc/keybroker', '0750', 0, Number(gid)],
      ['etc/keybroker/tls', '0750', 0, Number(gid)],
      ['etc/keybroker/pins', '0700', 0, 0],
      ['var/lib/keybroker', '0700', Number(uid), Number(gid)],
      ['var/lib/keybroker-token/tokens', '0700', Number(uid), Number(gid)],
      ['var/log/keybroker', '0750', Number(uid), Number(gid)],
    ];
    for (const [path, mode, u, g] of owners) {
      const st = statSync(join(dest.dir, path));
      assert.deepEqual(
        [modeOf(join(dest.dir, path)), st.uid, st.gid],
        [mode, u, g],
        `mode/uid/gid of ${path}`,
      );
    }
  });
  // Runs last: it changes the tree the tests above looked at.
  test('reinstalling replaces the app but keeps the operator config; uninstall keeps data unless --purge', () => {
    const conf = join(dest.dir, 'etc/keybroker/keybroker.json');
    writeFileSync(conf, '{"log":{"level":"debug"}}\n');
    writeFileSync(join(dest.dir, 'var/lib/keybroker/registry.db'), 'tenant data');
    writeFileSync(join(lib, 'stale-file'), 'from an older version');
    const again = installInto(dest.dir);
    assert.equal(readFileSync(conf, 'utf8'), '{"log":{"level":"debug"}}\n', 'reinstall overwrote the config');
    assert.match(again.stderr, /keeping existing \/etc\/keybroker\/keybroker.json/);
    assert.ok(!existsSync(join(lib, 'stale-file')), 'reinstall kept files of the old tree');

    const uninstall = join(SYSTEMD_DIR, 'uninstall.sh');
    const keep = run('bash', [uninstall], { env: { ...process.env, DESTDIR: dest.dir } });
    assert.equal(keep.status, 0, describeRun('uninstall.sh', keep));
    for (const gone of [
      'usr/lib/keybroker',
      'usr/bin/keybroker',
      'usr/lib/systemd/system/keybroker.service',
      'usr/lib/sysusers.d/keybroker.conf',
    ]) {
      assert.ok(!existsSync(join(dest.dir, gone)), `uninstall left ${gone}`);
    }
    for (const kept of [
      'etc/keybroker/keybroker.json',
      'var/lib/keybroker/registry.db',
      'var/log/keybroker',
    ]) {
      assert.ok(existsSync(join(dest.dir, kept)), `uninstall without --purge removed ${kept}`);
    }
    const purge = run('bash', [uninstall, '--purge', '--yes'], {
      env: { ...process.env, DESTDIR: dest.dir },
    });
    assert.equal(purge.status, 0, describeRun('uninstall.sh --purge --yes', purge));
    for (const gone of ['etc/keybroker', 'var/lib/keybroker', 'var/log/keybroker']) {
      assert.ok(!existsSync(join(dest.dir, gone)), `--purge left ${gone}`);
    }
  });
});

describe('install.sh variants', () => {
  test('PREFIX=/usr/local puts the app, unit, wrapper and backoff drop-in under /usr/local', () => {
    const d = tempDir('kb-destdir-');
    try {
      installInto(d.dir, { prefix: '/usr/local', args: ['--restart-backoff=yes'] });
      const unit = readFileSync(join(d.dir, 'usr/local/lib/systemd/system/keybroker.service'), 'utf8');
      assert.match(
        unit,
        /^ExecStart=\/usr\/local\/lib\/keybroker\/runtime\/bin\/node (--\S+ )*\/usr\/local\/lib\/keybroker\/daemon/m,
      );
      assert.ok(!unit.includes(' /usr/lib/keybroker'), 'a /usr/lib/keybroker path survived in the unit');
      for (const p of [
        'usr/local/lib/keybroker/runtime/bin/node',
        'usr/local/bin/keybroker',
        'usr/local/lib/sysusers.d/keybroker.conf',
        // --restart-backoff=yes: the systemd >= 254 drop-in, whatever this machine runs.
        'usr/local/lib/systemd/system/keybroker.service.d/restart-backoff.conf',
      ]) {
        assert.ok(existsSync(join(d.dir, p)), `${p} missing`);
      }
      assert.ok(!existsSync(join(d.dir, 'usr/lib/keybroker')), 'something went to /usr/lib/keybroker');
    } finally {
      d.cleanup();
    }
  });

  test('--owner under a DESTDIR refuses when the keybroker user does not exist', (t) => {
    if (run('getent', ['passwd', 'keybroker']).status === 0) {
      t.skip('this machine has a keybroker user');
      return;
    }
    const d = tempDir('kb-destdir-');
    try {
      const r = run('bash', [join(SYSTEMD_DIR, 'install.sh'), '--owner'], {
        env: { ...process.env, DESTDIR: d.dir },
      });
      assert.notEqual(r.status, 0, describeRun('install.sh --owner', r));
      assert.match(r.stderr, /user keybroker does not exist/);
    } finally {
      d.cleanup();
    }
  });
});
