/**
 * The audit chains of one deployment: `serve --workers N` gives each worker its own file and
 * hash chain (audit-w1.log, audit-w2.log, ... next to audit.log), so verifying a data dir means
 * verifying every chain found there; and one timeline of all of them, merged by time.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readAuditEntries } from './audit-reader.ts';
import type { AuditEntry } from './audit-record.ts';
import { verifyAuditFile } from './audit-verifier.ts';
import type { VerifyOptions, VerifyReport } from './audit-verifier.ts';

/** The audit files in `dir`: the single-process chain and each worker's (sorted, w2 before w10). */
export function auditChainFiles(dir: string): string[] {
  const order = (f: string) => {
    const m = /-w(\d+)\.log$/.exec(f);
    return m ? Number(m[1]) : 0;
  };
  return readdirSync(dir)
    .filter((f) => /^audit(-w\d+)?\.log$/.test(f))
    .sort((a, b) => order(a) - order(b))
    .map((f) => join(dir, f));
}

export interface ChainReport {
  readonly file: string;
  readonly report: VerifyReport;
}

/** Verify every chain of `dir` (each on its own: chains do not link to each other). */
export async function verifyAuditChains(dir: string, opts: VerifyOptions = {}): Promise<ChainReport[]> {
  const out: ChainReport[] = [];
  for (const file of auditChainFiles(dir)) out.push({ file, report: await verifyAuditFile(file, opts) });
  return out;
}

/** Every entry of every chain, ordered by time (ties: by file, then by sequence). */
export async function mergedTimeline(
  files: readonly string[],
): Promise<{ file: string; entry: AuditEntry }[]> {
  const all: { file: string; entry: AuditEntry; n: number }[] = [];
  for (const [n, file] of files.entries())
    for await (const { entry } of readAuditEntries(file)) all.push({ file, entry, n });
  all.sort((a, b) => a.entry.timeMs - b.entry.timeMs || a.n - b.n || a.entry.seq - b.entry.seq);
  return all.map(({ file, entry }) => ({ file, entry }));
}
