/**
 * systemd readiness protocol: with NOTIFY_SOCKET set, the daemon sends READY=1 once ready,
 * READY=1 + STATUS= after a SIGHUP reload (no RELOADING=1), and STOPPING=1 on SIGTERM. The receiving
 * end is a unix datagram socket served by a small python3 script (Node has none), which also
 * closes the barrier fds systemd-notify passes, as systemd does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDaemon, removeDataDir } from '../support/daemon-harness.ts';

const RECEIVER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_LEN(16 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(msg.decode().replace("\\n", "|"), flush=True)
`;

test('sd_notify: READY=1, READY=1 + STATUS on SIGHUP (no RELOADING=1), STOPPING=1 on SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-notify-'));
  const sock = join(dir, 'notify.sock');
  const rx = spawn('python3', ['-c', RECEIVER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: string[] = [];
  let text = '';
  rx.stdout.on('data', (b: Buffer) => {
    text += b.toString();
    got.splice(0, got.length, ...text.split('\n').filter((l) => l !== ''));
  });
  const until = async (what: string, pred: () => boolean) => {
    const end = Date.now() + 20_000;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    await until('receiver bound', () => got.includes('bound'));
    const d = await startDaemon({ env: { NOTIFY_SOCKET: sock } });
    await until('READY=1', () => got.some((m) => m.includes('READY=1')));
    assert.ok(
      got.find((m) => m.includes('READY=1'))?.includes(`MAINPID=${d.proc.pid}`),
      `MAINPID in ${JSON.stringify(got)}`,
    );
    d.proc.kill('SIGHUP');
    await until('READY=1 + STATUS after reload', () =>
      got.some((m) => m.includes('STATUS=serving (reloaded)')),
    );
    assert.ok(!got.some((m) => m.includes('RELOADING=1')), `RELOADING=1 sent: ${JSON.stringify(got)}`);
    assert.equal(await d.stop(), 0);
    await until('STOPPING=1', () => got.some((m) => m.includes('STOPPING=1')));
    removeDataDir(d.dataDir);
  } finally {
    rx.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
