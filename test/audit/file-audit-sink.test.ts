// The file sink: group commit, durability before acknowledgement, fail-closed on write/fsync
// errors with recovery, reopen, torn tails, checkpoints. Faults are injected through the file
// opener around a real file; the real-disk version is in disk-full.test.ts.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { queryAudit, tailAudit } from '../../daemon/src/audit/audit-reader.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { createSoftwareSigner } from '../../daemon/src/audit/checkpoint.ts';
import type { CheckpointSigner } from '../../daemon/src/audit/checkpoint.ts';
import { openAuditFile } from '../../daemon/src/audit/audit-file.ts';
import type { AuditFile, AuditFileOpener } from '../../daemon/src/audit/audit-file.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { rec } from './audit-fixtures.ts';

/** A real file with counters and switchable faults. */
function faultyOpener() {
  const state = {
    writes: 0,
    syncs: 0,
    failWrite: undefined as string | undefined,
    failSync: undefined as string | undefined,
    /** Write this many bytes for real, then fail (a partial write on a filling disk). */
    partialThenFail: undefined as number | undefined,
    syncGate: undefined as Promise<void> | undefined,
  };
  const errno = (code: string) => Object.assign(new Error(`${code}: injected`), { code });
  const open: AuditFileOpener = async (path) => {
    const f = await openAuditFile(path);
    const wrapped: AuditFile = {
      write: async (data) => {
        state.writes++;
        if (state.partialThenFail !== undefined) {
          const n = state.partialThenFail;
          state.partialThenFail = undefined;
          await f.write(data.subarray(0, n));
          throw errno('ENOSPC');
        }
        if (state.failWrite) throw errno(state.failWrite);
        return f.write(data);
      },
      sync: async () => {
        state.syncs++;
        if (state.syncGate) await state.syncGate;
        if (state.failSync) throw errno(state.failSync);
        return f.sync();
      },
      truncate: (n) => (state.failWrite ? Promise.reject(errno(state.failWrite)) : f.truncate(n)),
      close: () => f.close(),
    };
    return wrapped;
  };
  return { state, open };
}

const isAuditUnavailable = (e: unknown) => e instanceof KbError && e.code === 'AUDIT_UNAVAILABLE';

describe('FileAuditSink', () => {
  let dir: string;
  let n = 0;
  const fresh = () => join(dir, `a${++n}`, 'audit.log');
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kb-audit-sink-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('group commit: 2,000 concurrent appends share few fsyncs and all land in order', async () => {
    const path = fresh();
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path, openFile: f.open });
    const pos = await Promise.all(Array.from({ length: 2000 }, (_, i) => sink.append(rec(i))));
    assert.deepEqual(
      pos.map((p) => p.seq),
      Array.from({ length: 2000 }, (_, i) => i + 1),
      'positions are seq 1..2000 in call order',
    );
    assert.ok(f.state.syncs <= 10, `expected few fsyncs for 2,000 concurrent appends, got ${f.state.syncs}`);
    assert.deepEqual(sink.head(), pos[1999]);
    const st = sink.stats();
    assert.equal(st.records, 2000);
    assert.equal(st.batches, f.state.syncs, 'one batch per fsync');
    assert.deepEqual([st.pending, st.healthy, st.failures], [0, true, 0]);
    await sink.close();
    const r = await verifyAuditFile(path);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 2000);
  });

  it('append resolves only after fsync; records arriving meanwhile go into the next fsync', async () => {
    const path = fresh();
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path, openFile: f.open });
    let release!: () => void;
    f.state.syncGate = new Promise((r) => (release = r));
    let firstDone = false;
    const first = sink.append(rec(1)).then((p) => ((firstDone = true), p));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(f.state.syncs, 1, 'one fsync in progress');
    assert.equal(firstDone, false, 'append resolved before its fsync returned');
    const more = Array.from({ length: 10 }, (_, i) => sink.append(rec(i + 2)));
    f.state.syncGate = undefined;
    release();
    await first;
    await Promise.all(more);
    assert.equal(f.state.syncs, 2, 'the 10 records that arrived during the first fsync shared the second');
    assert.equal(f.state.writes, 2);
    await sink.close();
  });

  it('fail-closed: an fsync error rejects every pending and later append until recovered', async () => {
    const path = fresh();
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path, openFile: f.open, retryIntervalMs: 3_600_000 });
    await Promise.all([1, 2, 3].map((i) => sink.append(rec(i))));
    f.state.failSync = 'EIO';
    const pending = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => sink.append(rec(100 + i))));
    assert.ok(
      pending.every((p) => p.status === 'rejected' && isAuditUnavailable(p.reason)),
      'all 50 rejected with AUDIT_UNAVAILABLE',
    );
    const h = sink.health();
    assert.equal(h.ok, false);
    assert.match(h.reason ?? '', /EIO/);
    await assert.rejects(sink.append(rec(999)), isAuditUnavailable, 'later appends fail fast');
    assert.equal(await sink.probeNow(), false, 'probe fails while the disk still fails');
    f.state.failSync = undefined;
    assert.equal(await sink.probeNow(), true, 'probe succeeds once the disk works');
    assert.deepEqual(sink.health(), { ok: true });
    await sink.append(rec(4));
    await sink.close();
    const r = await verifyAuditFile(path);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    const tail = await tailAudit(path, 2);
    assert.equal(tail[0]?.type, 'note');
    assert.match(tail[0]?.type === 'note' ? tail[0].note : '', /audit resumed after failure: .*EIO/);
    const ids = (await queryAudit(path, {})).map((e) => e.requestId);
    assert.deepEqual(ids, ['req-1', 'req-2', 'req-3', 'req-4'], 'no rejected record is in the file');
  });

  it('a partial write on a full disk is cut off before the chain continues', async () => {
    const path = fresh();
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path, openFile: f.open, retryIntervalMs: 3_600_000 });
    await sink.append(rec(1));
    const sizeBefore = readFileSync(path).length;
    f.state.partialThenFail = 37;
    await assert.rejects(sink.append(rec(2)), isAuditUnavailable);
    assert.equal(readFileSync(path).length, sizeBefore + 37, 'the partial bytes are on disk for now');
    assert.equal(await sink.probeNow(), true);
    await sink.append(rec(3));
    await sink.close();
    const r = await verifyAuditFile(path);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.deepEqual(
      (await queryAudit(path, {})).map((e) => e.requestId),
      ['req-1', 'req-3'],
    );
  });

  it('recovers by itself through the retry probe', async () => {
    const path = fresh();
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path, openFile: f.open, retryIntervalMs: 10 });
    f.state.failWrite = 'ENOSPC';
    await assert.rejects(sink.append(rec(1)), isAuditUnavailable);
    assert.match(sink.health().reason ?? '', /ENOSPC/);
    f.state.failWrite = undefined;
    for (let i = 0; i < 500 && !sink.health().ok; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(sink.health().ok, true, 'healthy again without being asked');
    await sink.append(rec(2));
    await sink.close();
    assert.equal((await verifyAuditFile(path)).ok, true);
  });

  it('reopen continues the chain', async () => {
    const path = fresh();
    const signer = createSoftwareSigner();
    let sink = await FileAuditSink.open({ path, signer });
    await sink.append(rec(1));
    await sink.close();
    sink = await FileAuditSink.open({ path, signer });
    const before = sink.head();
    const p = await sink.append(rec(2));
    assert.equal(p.seq, before.seq + 1);
    await sink.close();
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem] });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 2);
  });

  it('a torn last line is cut off on open and recorded in a note', async () => {
    const path = fresh();
    let sink = await FileAuditSink.open({ path });
    await sink.append(rec(1));
    await sink.close();
    appendFileSync(path, '{"v":1,"seq":2,"type":"rec');
    assert.equal((await verifyAuditFile(path)).ok, false, 'the torn file does not verify as is');
    const events: string[] = [];
    sink = await FileAuditSink.open({ path, onEvent: (e) => events.push(e.kind) });
    await sink.append(rec(2));
    await sink.close();
    assert.deepEqual(events, ['torn-tail']);
    const r = await verifyAuditFile(path);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    const entries = await tailAudit(path, 3);
    assert.match(
      entries[1]?.type === 'note' ? entries[1].note : '',
      /torn tail discarded on open: 26 bytes at offset \d+/,
    );
  });

  it('damage to a complete line refuses to open (never silently accepted)', async () => {
    const path = fresh();
    const sink = await FileAuditSink.open({ path });
    for (let i = 1; i <= 3; i++) await sink.append(rec(i));
    await sink.close();
    const b = readFileSync(path);
    const at = b.indexOf('req-2');
    b[at] = 'X'.charCodeAt(0);
    writeFileSync(path, b);
    await assert.rejects(
      FileAuditSink.open({ path }),
      (e: unknown) => isAuditUnavailable(e) && /damaged at byte \d+/.test((e as KbError).safeMessage),
    );
  });

  it('checkpoints every N entries and on close', async () => {
    const path = fresh();
    const signer = createSoftwareSigner();
    const sink = await FileAuditSink.open({ path, signer, checkpointEvery: 10 });
    for (let i = 0; i < 35; i++) await sink.append(rec(i));
    await sink.close();
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem] });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.checkpoints, 4, '3 after 10 entries each + 1 on close');
    assert.equal(r.checkpointsVerified, 4);
  });

  it('checkpoints after T when idle', async () => {
    const path = fresh();
    const signer = createSoftwareSigner();
    const sink = await FileAuditSink.open({ path, signer, checkpointIntervalMs: 20 });
    await sink.append(rec(1));
    let cps = 0;
    for (let i = 0; i < 200 && cps === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      cps = (await tailAudit(path, 5)).filter((e) => e.type === 'checkpoint').length;
    }
    assert.equal(cps, 1, 'a timed checkpoint was written');
    await sink.close();
  });

  it('a failing signer does not stop records; health says so', async () => {
    const path = fresh();
    const good = createSoftwareSigner();
    const bad: CheckpointSigner = { ...good, sign: () => Promise.reject(new Error('HSM away')) };
    const sink = await FileAuditSink.open({ path, signer: bad, checkpointEvery: 2 });
    for (let i = 0; i < 5; i++) await sink.append(rec(i));
    const h = sink.health();
    assert.equal(h.ok, true);
    assert.match(h.reason ?? '', /checkpoint: signing failed: HSM away/);
    await sink.close();
    assert.equal((await verifyAuditFile(path)).records, 5);
  });

  it('a backlog beyond maxPending fails closed instead of growing without bound', async () => {
    const f = faultyOpener();
    const sink = await FileAuditSink.open({ path: fresh(), openFile: f.open, maxPending: 10 });
    let release!: () => void;
    f.state.syncGate = new Promise((r) => (release = r));
    const first = sink.append(rec(0)); // in flight, holding the fsync
    await new Promise((r) => setTimeout(r, 10));
    const queued = Array.from({ length: 10 }, (_, i) => sink.append(rec(i + 1)));
    await assert.rejects(
      sink.append(rec(99)),
      (e: unknown) => isAuditUnavailable(e) && /backlog full/.test((e as KbError).safeMessage),
    );
    f.state.syncGate = undefined;
    release();
    await Promise.all([first, ...queued]);
    assert.equal(sink.health().ok, true, 'a full backlog is not a disk failure');
    await sink.close();
  });

  it('validates inputs and refuses appends after close', async () => {
    const sink = await FileAuditSink.open({ path: fresh() });
    await assert.rejects(
      sink.append(rec(1, { time: new Date(Number.NaN) })),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
    await assert.rejects(
      sink.append(rec(1, { keyVersion: -1 })),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
    await sink.close();
    await assert.rejects(
      sink.append(rec(1)),
      (e: unknown) => e instanceof KbError && e.code === 'SHUTTING_DOWN',
    );
    assert.equal(sink.health().ok, false);
  });
});

describe('one writer per audit file', () => {
  it('a second sink on the same file is refused while the first is open; a stale lock is taken over', async () => {
    const d = mkdtempSync(join(tmpdir(), 'kb-audit-lock-'));
    try {
      const path = join(d, 'audit.log');
      const first = await FileAuditSink.open({ path });
      await assert.rejects(
        FileAuditSink.open({ path }),
        (e: unknown) =>
          e instanceof KbError && e.code === 'FAILED_PRECONDITION' && /in use by process/.test(e.safeMessage),
      );
      await first.close();
      writeFileSync(`${path}.lock`, '2147483646\n'); // a pid that does not exist
      const again = await FileAuditSink.open({ path });
      await again.append(rec(1));
      await again.close();
      assert.equal((await verifyAuditFile(path)).records, 1);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('fail-closed for every kind of write failure', () => {
  const codes = ['ENOSPC', 'EROFS', 'EIO', 'EDQUOT', 'EFBIG'];
  for (const where of ['write', 'sync'] as const) {
    for (const code of codes) {
      it(`${code} from ${where}: appends rejected, health names it, recovery resumes the chain`, async () => {
        const d = mkdtempSync(join(tmpdir(), 'kb-audit-errno-'));
        try {
          const path = join(d, 'audit.log');
          const f = faultyOpener();
          const sink = await FileAuditSink.open({ path, openFile: f.open, retryIntervalMs: 3_600_000 });
          await sink.append(rec(1));
          if (where === 'write') f.state.failWrite = code;
          else f.state.failSync = code;
          const r = await Promise.allSettled([sink.append(rec(2)), sink.append(rec(3))]);
          assert.ok(
            r.every((x) => x.status === 'rejected' && isAuditUnavailable(x.reason)),
            `${code}: ${JSON.stringify(r.map((x) => x.status))}`,
          );
          assert.deepEqual(
            [sink.health().ok, new RegExp(code).test(sink.health().reason ?? '')],
            [false, true],
            JSON.stringify(sink.health()),
          );
          f.state.failWrite = undefined;
          f.state.failSync = undefined;
          assert.equal(await sink.probeNow(), true);
          await sink.append(rec(4));
          await sink.close();
          const v = await verifyAuditFile(path);
          assert.equal(v.ok, true, JSON.stringify(v.firstBad));
          assert.deepEqual(
            (await queryAudit(path, {})).map((e) => e.requestId),
            ['req-1', 'req-4'],
          );
        } finally {
          rmSync(d, { recursive: true, force: true });
        }
      });
    }
  }
});
