// A real full disk: a 1 MiB tmpfs mounted for this test (needs root and mount; skipped otherwise).
// Appends fail with AUDIT_UNAVAILABLE and health drops while the disk is full; service resumes
// once space returns, and the chain verifies without any rejected record in it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { rec } from './audit-fixtures.ts';

const base = mkdtempSync(join(tmpdir(), 'kb-audit-disk-'));
const full = join(base, 'full');
const ro = join(base, 'ro');
const mounted: string[] = [];

function tryMount(dir: string, opts: string): boolean {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'pipe' });
    mounted.push(dir);
    return true;
  } catch {
    return false;
  }
}

const canMount = process.getuid?.() === 0 && tryMount(full, 'size=1m,mode=0700');
const skip = canMount ? false : 'needs root and a working mount(8) for a small tmpfs';
const isAuditUnavailable = (e: unknown) => e instanceof KbError && e.code === 'AUDIT_UNAVAILABLE';

/** Fill the filesystem with a filler file until ENOSPC. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

describe('audit on a real disk that fills up', { skip }, () => {
  before(() => undefined);
  after(() => {
    for (const d of mounted.reverse()) execFileSync('umount', [d]);
    rmSync(base, { recursive: true, force: true });
  });

  it('disk full: appends fail, health drops, and service resumes when space returns', async () => {
    const path = join(full, 'audit', 'audit.log');
    const sink = await FileAuditSink.open({ path, retryIntervalMs: 3_600_000 });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => sink.append(rec(i, { requestId: `before-${i}` }))),
    );
    const filler = join(full, 'filler');
    fill(filler);
    const during = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => sink.append(rec(i, { requestId: `during-${i}` }))),
    );
    assert.ok(
      during.every((r) => r.status === 'rejected' && isAuditUnavailable(r.reason)),
      `every append while full is rejected; statuses: ${[...new Set(during.map((r) => r.status))].join(',')}`,
    );
    const h = sink.health();
    assert.equal(h.ok, false);
    assert.match(h.reason ?? '', /ENOSPC/);
    await assert.rejects(sink.append(rec(0, { requestId: 'later' })), isAuditUnavailable);

    unlinkSync(filler);
    assert.equal(await sink.probeNow(), true, 'probe succeeds once space returns');
    assert.equal(sink.health().ok, true);
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => sink.append(rec(i, { requestId: `after-${i}` }))),
    );
    await sink.close();

    const r = await verifyAuditFile(path);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    const ids = (await queryAudit(path, {})).map((e) => e.requestId);
    assert.equal(ids.filter((id) => id.startsWith('before-')).length, 10);
    assert.equal(ids.filter((id) => id.startsWith('after-')).length, 200);
    assert.equal(
      ids.filter((id) => id.startsWith('during-') || id === 'later').length,
      0,
      'no rejected record was kept',
    );
  });

  it('a read-only filesystem: the sink refuses to open (the daemon cannot start without audit)', async () => {
    assert.ok(tryMount(ro, 'size=64k,ro'), 'mount a read-only tmpfs');
    await assert.rejects(FileAuditSink.open({ path: join(ro, 'audit.log') }), (e: unknown) =>
      ['EROFS', 'EACCES'].includes((e as NodeJS.ErrnoException).code ?? ''),
    );
  });
});
