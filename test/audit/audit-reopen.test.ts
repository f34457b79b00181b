// Reopening long files: only the tail (last 256 lines) is re-verified on open; damage there refuses
// the open, damage further back is left for `audit verify` (which finds it).
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readChainTail } from '../../daemon/src/audit/audit-file-tail.ts';
import { tailAudit } from '../../daemon/src/audit/audit-reader.ts';
import { GENESIS_HASH } from '../../daemon/src/audit/audit-record.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { linesOf, rec } from './audit-fixtures.ts';

describe('reopen and tail checks', () => {
  let dir: string;
  let long: Buffer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kb-audit-reopen-'));
    const path = join(dir, 'long.log');
    const sink = await FileAuditSink.open({ path });
    await Promise.all(Array.from({ length: 2000 }, (_, i) => sink.append(rec(i))));
    await sink.close();
    long = readFileSync(path);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const copy = (name: string, bytes: Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('tail reads the last entries of a long file from its end', async () => {
    const p = copy('tail.log', long);
    assert.deepEqual(
      (await tailAudit(p, 3)).map((e) => e.seq),
      [1998, 1999, 2000],
    );
    assert.equal((await tailAudit(p, 5000)).length, 2000);
  });

  it('an empty or missing file is the genesis', async () => {
    const t = await readChainTail(join(dir, 'missing.log'));
    assert.deepEqual([t.seq, t.size, t.hash.equals(GENESIS_HASH)], [0, 0, true]);
  });

  it('a file holding only a torn fragment reopens as empty plus a note', async () => {
    const p = copy('fragment.log', Buffer.from('{"v":1,"se'));
    const sink = await FileAuditSink.open({ path: p });
    assert.equal(sink.head().seq, 1, 'the note is entry 1');
    await sink.close();
    assert.equal((await verifyAuditFile(p)).ok, true);
  });

  it('a long file reopens from its tail and the chain continues', async () => {
    const p = copy('continue.log', long);
    const sink = await FileAuditSink.open({ path: p });
    assert.equal(sink.head().seq, 2000);
    assert.equal((await sink.append(rec(1))).seq, 2001);
    await sink.close();
    const r = await verifyAuditFile(p);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 2001);
  });

  it('damage within the last 256 lines refuses the open', async () => {
    const ls = linesOf(long);
    const l = ls[ls.length - 100];
    assert.ok(l);
    const b = Buffer.from(long);
    b[l.offset + 20] = (b[l.offset + 20] ?? 0) ^ 0x04;
    const p = copy('tail-damage.log', b);
    await assert.rejects(
      FileAuditSink.open({ path: p }),
      (e: unknown) =>
        e instanceof KbError && e.code === 'AUDIT_UNAVAILABLE' && e.safeMessage.includes(`byte ${l.offset}`),
    );
  });

  it('damage further back opens (tail only) but verify names it', async () => {
    const ls = linesOf(long);
    const l = ls[10];
    assert.ok(l);
    const b = Buffer.from(long);
    b[l.offset + 20] = (b[l.offset + 20] ?? 0) ^ 0x04;
    const p = copy('old-damage.log', b);
    const sink = await FileAuditSink.open({ path: p });
    await sink.close();
    const r = await verifyAuditFile(p);
    assert.deepEqual([r.ok, r.firstBad?.seq, r.firstBad?.offset], [false, l.seq, l.offset]);
  });

  it('a torn line after a long file is cut and noted', async () => {
    const p = copy('torn-long.log', long);
    appendFileSync(p, Buffer.alloc(300)); // zeros, as a power loss can leave
    const sink = await FileAuditSink.open({ path: p });
    assert.equal(sink.head().seq, 2001);
    await sink.close();
    const r = await verifyAuditFile(p);
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
  });
});
