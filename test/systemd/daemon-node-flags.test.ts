/**
 * DAEMON_NODE_FLAGS are the flags every launcher of `serve` passes: the systemd unit and
 * `dev.sh run` (the bench and the test harness import the list), and node accepts them with the
 * effect they are there for.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DAEMON_NODE_FLAGS } from '../../daemon/src/cli/daemon-node-flags.ts';
import { REPO_ROOT, describeRun, run } from './systemd-tools.ts';

/** The words between the node binary and the entry point on the line that starts `serve`. */
function flagsOn(line: string | undefined): string[] {
  const words = (line ?? '').trim().split(/\s+/);
  const node = words.findIndex((w) => /(^|\/)node$/.test(w));
  const entry = words.findIndex((w) => w.endsWith('daemon/src/cli/main.ts'));
  assert.ok(node >= 0 && entry > node, `no "node ... main.ts" in: ${line}`);
  return words.slice(node + 1, entry);
}

describe('daemon node flags', () => {
  test('the systemd unit starts serve with them', () => {
    const unit = readFileSync(join(REPO_ROOT, 'systemd/keybroker.service'), 'utf8');
    assert.deepEqual(flagsOn(/^ExecStart=(.*)$/m.exec(unit)?.[1]), DAEMON_NODE_FLAGS);
  });

  test('dev.sh run starts serve with them', () => {
    const dev = readFileSync(join(REPO_ROOT, 'daemon/scripts/dev.sh'), 'utf8');
    const serve = dev.split('\n').find((l) => l.includes('main.ts serve'));
    assert.deepEqual(flagsOn(serve), DAEMON_NODE_FLAGS);
  });

  test('node caps the young generation at 2 × 16 MB with them (it grows to 128 MB without on a 4 GB heap)', () => {
    // Allocation that keeps ~10 MB alive, so the young generation grows to its cap.
    const probe = `
      const v8 = require('node:v8');
      let keep = [], max = 0;
      for (let i = 0; i < 6e6; i++) {
        keep.push({ i, a: [i] });
        if (keep.length > 200000) keep = [];
        if (i % 50000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
      }
      console.log(max);`;
    const r = run(process.execPath, [...DAEMON_NODE_FLAGS, '-e', probe]);
    assert.equal(r.status, 0, describeRun('node with the daemon flags', r));
    const max = Number(r.stdout.trim());
    assert.ok(max > 0 && max <= 32 * 2 ** 20, `new space reached ${max} bytes`);
  });
});
