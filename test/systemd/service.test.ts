/**
 * keybroker.service run for real: install.sh into /, systemd-sysusers, systemd-tmpfiles, journald,
 * provisioning, then `systemctl start/reload/stop` under a real systemd 252 service manager
 * (the user-mode manager, as root: PID 1 on this machine is not systemd), all inside a private
 * mount namespace whose /etc, /usr and /var writes land in a temp dir (see live-unit.sh).
 * Checks readiness notification, /healthz and /readyz, the IP allow-list, the sandbox around
 * the daemon (seccomp with the kill action), reload, drain and uninstall.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DAEMON_NODE_FLAGS } from '../../daemon/src/cli/daemon-node-flags.ts';
import { openCryptokiUnavailable } from '../support/opencryptoki-token.ts';
import { REPO_ROOT, describeRun, hasTool, run, tempDir } from './systemd-tools.ts';

const SCRIPT = join(REPO_ROOT, 'test/systemd/live-unit.sh');

function why(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (mount namespaces, overlays, a service user)';
  for (const tool of ['unshare', 'systemctl', 'systemd-sysusers', 'curl', 'softhsm2-util', 'runuser']) {
    if (!hasTool(tool)) return `${tool} is not installed`;
  }
  if (!existsSync('/lib/systemd/systemd')) return '/lib/systemd/systemd is not installed';
  if (!existsSync(join(REPO_ROOT, 'daemon/src/cli/serve-command.ts')))
    return 'the daemon has no serve command yet';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'no overlayfs';
  return false;
}
const skip = why();

interface Live {
  readonly values: ReadonlyMap<string, string>;
  readonly transcript: string;
  readonly daemonLog: string;
}

/** Runs live-unit.sh in a private mount namespace with the given extra drop-ins. */
function runLive(dropIns: ReadonlyMap<string, string>, env: NodeJS.ProcessEnv = {}): Live {
  const work = tempDir('kb-live-');
  try {
    const files = [...dropIns].map(([name, text]) => {
      const f = join(work.dir, name);
      writeFileSync(f, text);
      return f;
    });
    // A private mount and PID namespace: nothing outlives the run, even when it is killed.
    const ns = ['-m', '-i', '-p', '--fork', '--kill-child', '--mount-proc', '--propagation', 'private'];
    const r = run('unshare', [...ns, 'bash', SCRIPT, REPO_ROOT, work.dir, ...files], {
      timeoutMs: 240_000,
      env: { ...process.env, ...env },
    });
    const values = new Map<string, string>();
    for (const line of r.stdout.split('\n')) {
      const m = /^@@(\S+) ?(.*)$/.exec(line);
      if (m?.[1] !== undefined) values.set(m[1], m[2] ?? '');
    }
    const logFile = join(work.dir, 'daemon.log');
    const daemonLog = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no daemon log)';
    const transcript = describeRun('live-unit.sh', r);
    if (r.status !== 0) throw new Error(`${transcript}\n--- daemon log\n${daemonLog.slice(-4000)}`);
    return { values, transcript, daemonLog };
  } finally {
    work.cleanup();
  }
}

/** Asserts one reported value; the message carries the whole run for diagnosis. */
function expectValue(live: Live, key: string, check: (v: string) => boolean, wanted: string): void {
  const v = live.values.get(key);
  assert.ok(
    v !== undefined && check(v),
    `${key}: got ${JSON.stringify(v)}, wanted ${wanted}\n${live.transcript}\n--- daemon log\n${live.daemonLog.slice(-4000)}`,
  );
}
const eq = (want: string) => (v: string) => v === want;

type Case = [key: string, check: (v: string) => boolean, wanted: string];

/** What every run must show; `privateUsers` is false for drop-ins that turn PrivateUsers off. */
function commonCases(live: Live, privateUsers: boolean): Case[] {
  const user = /^keybroker:x:(\d+):(\d+):[^:]*:([^:]*):(.*)$/.exec(live.values.get('user') ?? '');
  assert.ok(user, `systemd-sysusers did not create keybroker:\n${live.transcript}`);
  const [, uid, gid] = user;
  const zeroCaps = eq('0000000000000000');
  const cases: Case[] = [
    ['install', eq('0'), 'install.sh into / to succeed'],
    ['tmpfiles', eq('0'), 'systemd-tmpfiles --create to succeed'],
    ['manager', (v) => v === 'running' || v === 'degraded', 'a running manager'],
    ['start', eq('0'), 'systemctl start to return 0 (READY=1 received)'],
    ['started.ActiveState', eq('active'), 'active'],
    ['started.SubState', eq('running'), 'running'],
    ['started.StatusText', eq('serving'), 'STATUS=serving from sd_notify'],
    ['started.NRestarts', eq('0'), 'no restarts'],
    ['started.LimitNOFILE', eq('1048576'), 'the unit limit'],
    ['started.SystemCallErrorNumber', eq('2147483646'), 'the seccomp kill action in effect'],
    ['healthz', eq('200'), 'HTTP 200 from /healthz'],
    ['readyz', eq('200'), 'HTTP 200 from /readyz'],
    ['metrics', eq('200'), 'HTTP 200 from /metrics'],
    ['metrics-process', eq('1'), 'an open_fds gauge (read from /proc/self under ProcSubset=pid)'],
    ['proc.Uid', eq(`${uid} ${uid} ${uid} ${uid}`), `uid ${uid} (keybroker) everywhere`],
    ['proc.Gid', eq(`${gid} ${gid} ${gid} ${gid}`), `gid ${gid} (keybroker) everywhere`],
    ['proc.NoNewPrivs', eq('1'), 'NoNewPrivileges'],
    ['proc.Seccomp', eq('2'), 'a seccomp filter (mode 2)'],
    ['proc.CapEff', zeroCaps, 'no effective capabilities'],
    ['proc.CapBnd', zeroCaps, 'an empty bounding set'],
    ['proc.CapAmb', zeroCaps, 'no ambient capabilities'],
    ['proc.umask', eq('0077'), 'UMask=0077'],
    ['proc.nofile', (v) => /^(\d+):\1$/.test(v), 'soft == hard open-file limit'],
    [
      'proc.uid_map',
      (v) => v.replace(/\s+/g, ' ').trim() === `0 0 1; ${uid} ${uid} 1;`,
      'PrivateUsers: root and keybroker only',
    ],
    ['mount./', (v) => v.startsWith('ro,'), '/ read-only'],
    ['mount./usr', (v) => v.startsWith('ro,'), '/usr read-only'],
    ['mount./etc', (v) => v.startsWith('ro,'), '/etc read-only'],
    ['mount./var/lib/keybroker', (v) => v.startsWith('rw,'), 'the state directory writable'],
    ['mount./tmp', (v) => /\/systemd-private-\w+-keybroker\.service-\w+\/tmp$/.test(v), 'a private /tmp'],
    ['mount./home', (v) => v.includes('inaccessible'), '/home inaccessible'],
    ['mount./root', (v) => v.includes('inaccessible'), '/root inaccessible'],
    ['mount./dev', (v) => v.includes('tmpfs'), 'a private /dev'],
    ['dev-entries', (v) => !/\b(sd|vd|nvme|loop|mem|kmsg|bus)\w*/.test(v), 'only pseudo devices in /dev'],
    [
      'cmdline',
      eq(
        `/usr/lib/keybroker/runtime/bin/node ${DAEMON_NODE_FLAGS.join(' ')} /usr/lib/keybroker/daemon/src/cli/main.ts serve --config /etc/keybroker/keybroker.json `,
      ),
      'the ExecStart command line',
    ],
    [
      'state-files',
      (v) => v.includes('registry.db') && v.includes('tenants/acme/'),
      'a registry and a tenant file',
    ],
    [
      'state-files',
      (v) =>
        v
          .split(';')
          .filter(Boolean)
          .every((e) => /^keybroker:keybroker:(600|700):/.test(e)),
      'every state file keybroker-owned, 0600/0700',
    ],
    ['reload', eq('0'), 'systemctl reload to return 0'],
    ['reloaded.MainPID', eq(live.values.get('started.MainPID') ?? '?'), 'the same main PID after reload'],
    [
      'reloaded.ActiveState',
      eq('active'),
      'active again after the reload (ExecReload, then READY=1 + STATUS)',
    ],
    ['reloaded.healthz', eq('200'), 'HTTP 200 after reload'],
    ['restarted.NRestarts', eq('1'), 'one automatic restart after SIGKILL'],
    ['restarted.ActiveState', eq('active'), 'active again (READY=1 from the new process)'],
    ['restarted.new-pid', eq('yes'), 'a new main process'],
    ['restarted.healthz', eq('200'), 'HTTP 200 from the restarted daemon'],
    ['stop', eq('0'), 'systemctl stop to return 0'],
    ['stopped.ActiveState', eq('inactive'), 'inactive'],
    ['stopped.Result', eq('success'), 'a clean stop'],
    ['stopped.ExecMainStatus', eq('0'), 'exit status 0 after draining'],
    ['uninstall', eq('0'), 'uninstall.sh to succeed'],
    ['after-uninstall', eq('/etc/keybroker /var/lib/keybroker '), 'config and data kept'],
    ['purge', eq('0'), 'uninstall.sh --purge to succeed'],
    ['after-purge', eq(''), 'config, data and logs gone'],
    ['user-after-purge', eq('absent'), 'the keybroker user removed'],
    ['journal.ready', (v) => Number(v) >= 1, 'the JSON "ready" line in the journal (StandardOutput=journal)'],
    ['journal.unit', eq('keybroker.service '), 'journal entries tagged keybroker, from keybroker.service'],
    ['mdwe.no', eq('ok'), 'the installed runtime to run as a transient unit'],
    ['mdwe.yes', eq('failed'), 'MemoryDenyWriteExecute=yes to break Node (why the unit leaves it out)'],
  ];
  if (live.values.get('external-address') !== 'none') {
    // The metrics listener is on 0.0.0.0 for these runs: only the unit's allow-list stops it.
    cases.push(
      ['external.healthz', eq('000'), 'no answer on a non-loopback address (IPAddressAllow=localhost)'],
      ['external-allowed.healthz', eq('200'), 'an answer once that address is allowed'],
    );
  }
  if (!privateUsers) return cases.filter(([key]) => key !== 'proc.uid_map');
  return cases;
}

// One run covers the shipped EPERM action too: with the kill action (an empty
// SystemCallErrorNumber= restores it) any denied call would end the daemon with SIGSYS, so
// passing means the shipped unit never returns EPERM on these paths.
const SECCOMP_KILL = new Map([['zz-seccomp-kill.conf', '[Service]\nSystemCallErrorNumber=\n']]);

describe('keybroker.service under a real systemd manager', { skip, timeout: 600_000 }, () => {
  test('SoftHSM2: install, start (Type=notify), health, sandbox, reload, crash restart, stop, uninstall', () => {
    const live = runLive(SECCOMP_KILL);
    for (const [key, check, wanted] of commonCases(live, true)) {
      expectValue(live, key, check, wanted);
    }
    // Under the user-mode manager LoadCredential= leaves the directory empty (see live-unit.sh).
    console.log(`# credential seen by the service: ${JSON.stringify(live.values.get('credential'))}`);
    console.log(`# open-file limit in the service: ${live.values.get('proc.nofile')}`);
    console.log(`# systemctl reload until active again: ${live.values.get('reload-ms')} ms`);
  });

  test('opencryptoki with drop-ins/opencryptoki.conf and its sysusers.d membership', (t) => {
    const why = openCryptokiUnavailable();
    if (why !== undefined) {
      t.skip(why);
      return;
    }
    const live = runLive(SECCOMP_KILL, { KB_LIVE_HSM: 'opencryptoki' });
    const cases: Case[] = [
      ['hsm', eq('opencryptoki'), 'the opencryptoki run'],
      ['pkcs11-group', (v) => /(^|[:,])keybroker(,|$)/.test(v), 'keybroker listed in the pkcs11 group'],
      ...commonCases(live, false),
      ['proc.uid_map', (v) => v.trim().startsWith('0 0 4294967295'), 'no user namespace (PrivateUsers=no)'],
    ];
    for (const [key, check, wanted] of cases) expectValue(live, key, check, wanted);
    console.log(`# opencryptoki: systemctl reload until active again: ${live.values.get('reload-ms')} ms`);
  });
});
