/**
 * The pinned audit head on the real daemon (SoftHSM2 checkpoint key, registry.db): a record
 * appended with a correctly recomputed hash while the daemon was stopped makes the next start
 * refuse to open the log (never ready, /readyz names the recovery command, nothing signed over
 * it); after `keybroker audit reset-head` the daemon starts, records the break, and the whole
 * log verifies with the pinned key fingerprint.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { canonicalBytes, chainHash, entryLine } from '../../daemon/src/audit/audit-record.ts';
import type { RecordEntry } from '../../daemon/src/audit/audit-record.ts';
import { keyIdOf } from '../../daemon/src/audit/checkpoint.ts';
import { REPO_ROOT, initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
let dataDir: string;
let d: DaemonHandle | undefined;

before(async () => {
  dataDir = await initTestDataDir();
});
after(async () => {
  if (d !== undefined) await d.stop();
  removeDataDir(dataDir);
});

const auditPath = () => join(dataDir, 'audit', 'audit.log');
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

function forgeRecord(path: string): void {
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  const last = JSON.parse(lines.at(-1) ?? '{}') as { seq: number; hash: string };
  const entry: RecordEntry = {
    type: 'record',
    seq: last.seq + 1,
    timeMs: Date.now(),
    requestId: 'forged',
    identity: 'spiffe://acme/admin/root',
    org: 'acme',
    tenant: 'alpha',
    rpc: 'keybroker.v1.Admin/DestroyTenant',
    result: 'ok',
  };
  const hash = chainHash(Buffer.from(last.hash, 'hex'), canonicalBytes(entry)).toString('hex');
  appendFileSync(path, entryLine(entry, hash));
}

test('a forged tail written while stopped: the daemon refuses to sign over it until reset-head', async () => {
  d = await startDaemon({ dataDir });
  await d.client('admin').admin.unary('ListTenants', { org: 'acme' });
  const keyLine = d.lines.find((l) => l.msg === 'audit checkpoint key (pin this fingerprint)');
  const fingerprint = String(keyLine?.fingerprint);
  assert.equal(await d.stop(), 0);
  d = undefined;
  assert.equal(keyIdOf(readFileSync(join(dataDir, 'audit', 'audit-key.pem'), 'utf8')), fingerprint);

  forgeRecord(auditPath());
  const forged = readFileSync(auditPath());
  d = await startDaemon({ dataDir, waitReady: false });
  const refusal = await d.waitFor((l) => l.msg === 'cannot open audit log; retrying', 60_000);
  assert.match(
    String(refusal.err),
    /appended after the checkpoint of the last clean shutdown \(a forged tail\)/,
  );
  assert.match(String(refusal.err), /keybroker audit reset-head --data-dir/);
  const ready = await d.metrics('/readyz');
  assert.equal(ready.status, 503, ready.body);
  assert.match(ready.body, /reset-head/);
  assert.deepEqual(readFileSync(auditPath()), forged, 'nothing was signed over the forged tail');
  await d.stop();
  d = undefined;

  const verify = (...extra: string[]) =>
    cli(
      'audit',
      'verify',
      '--file',
      auditPath(),
      '--public-key',
      join(dataDir, 'audit', 'audit-key.pem'),
      ...extra,
    );
  const failed = verify('--key-fingerprint', fingerprint);
  assert.equal(failed.status, 1, failed.stdout + failed.stderr);
  assert.match(failed.stdout, /unsigned tail/);

  const reset = cli('audit', 'reset-head', '--data-dir', dataDir);
  assert.equal(reset.status, 0, reset.stdout + reset.stderr);
  d = await startDaemon({ dataDir });
  assert.equal(await d.stop(), 0);
  d = undefined;
  assert.match(readFileSync(auditPath(), 'utf8'), /pinned audit head reset by an operator/);
  const ok = verify('--key-fingerprint', fingerprint);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
});
