// kill -9 under load: a child appends from 64 concurrent workers and reports every acknowledged
// record; the parent SIGKILLs it at a random moment, reopens the file (cutting any torn tail),
// and checks the chain verifies and contains every acknowledged record at its acknowledged seq.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readAuditEntries } from '../../daemon/src/audit/audit-reader.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';

const WRITER = join(import.meta.dirname, 'fixtures/audit-writer.ts');
const dir = mkdtempSync(join(tmpdir(), 'kb-audit-kill9-'));
const path = join(dir, 'audit.log');

/** Run the writer, kill it with SIGKILL after `minAcks` acks plus a random delay; return acks. */
function runAndKill(round: number, minAcks: number): Promise<Map<number, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, path, String(round)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acks = new Map<number, string>();
    let buf = '';
    let armed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^ack (\d+) (\S+)$/.exec(line);
        if (m) acks.set(Number(m[1]), m[2] as string);
      }
      if (!armed && acks.size >= minAcks) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 300));
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code}/${signal} before the kill`));
      else resolve(acks);
    });
  });
}

describe('kill -9 under load', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));
  const allAcks = new Map<number, string>();
  for (const round of [1, 2, 3]) {
    it(`round ${round}: every acknowledged record survives, and the chain verifies`, async () => {
      const acks = await runAndKill(round, 500 + Math.floor(Math.random() * 2000));
      assert.ok(acks.size >= 500, `acks seen: ${acks.size}`);
      for (const [s, id] of acks) allAcks.set(s, id);
      // Reopen as the restarted daemon would: a torn tail is cut and noted, the chain continues.
      const sink = await FileAuditSink.open({ path });
      await sink.close();
      const r = await verifyAuditFile(path);
      assert.equal(r.ok, true, `verify after kill: ${JSON.stringify(r.firstBad)}`);
      const inFile = new Map<number, string>();
      for await (const { entry } of readAuditEntries(path)) {
        if (entry.type === 'record') inFile.set(entry.seq, entry.requestId);
      }
      let missing = 0;
      for (const [s, id] of allAcks) if (inFile.get(s) !== id) missing++;
      assert.equal(missing, 0, `${missing} of ${allAcks.size} acknowledged records missing or moved`);
    });
  }
});
