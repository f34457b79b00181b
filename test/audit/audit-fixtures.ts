// Helpers for the audit tests: build a real chain file and find its lines.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditRecordInput } from '../../daemon/src/audit/audit-sink.ts';
import { createSoftwareSigner } from '../../daemon/src/audit/checkpoint.ts';
import type { CheckpointSigner } from '../../daemon/src/audit/checkpoint.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';

/** A record input as the call gate would build it. */
export function rec(i: number, over: Partial<AuditRecordInput> = {}): AuditRecordInput {
  return {
    time: new Date(Date.UTC(2026, 0, 1) + i * 1000),
    requestId: `req-${i}`,
    identity: `spiffe://acme/t${i % 3}/svc`,
    org: 'acme',
    tenant: `t${i % 3}`,
    rpc: i % 2 ? 'keybroker.v1.Crypto/Encrypt' : 'keybroker.v1.Crypto/Decrypt',
    customer: 'default',
    keyVersion: 1 + (i % 4),
    result: i % 5 === 0 ? 'denied' : 'ok',
    ...(i % 5 === 0 ? { code: 'PERMISSION_DENIED' as const, reason: 'no rule allows this call' } : {}),
    ...over,
  };
}

export interface LineInfo {
  readonly offset: number;
  readonly length: number; // including "\n"
  readonly seq: number;
}

/** Byte offsets and seqs of the lines of a (valid) file. */
export function linesOf(bytes: Buffer): LineInfo[] {
  const out: LineInfo[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const nl = bytes.indexOf(0x0a, pos);
    const end = nl === -1 ? bytes.length : nl + 1;
    const seq = (JSON.parse(bytes.toString('utf8', pos, end)) as { seq: number }).seq;
    out.push({ offset: pos, length: end - pos, seq });
    pos = end;
  }
  return out;
}

/** The line containing byte `offset`. */
export function lineAt(lines: readonly LineInfo[], offset: number): LineInfo {
  const l = lines.find((x) => offset >= x.offset && offset < x.offset + x.length);
  if (!l) throw new Error(`no line at ${offset}`);
  return l;
}

/** Write `n` records through a real sink (checkpoint every `every`), close it, return the file. */
export async function buildChain(
  dir: string,
  n: number,
  every = 4,
  signer: CheckpointSigner = createSoftwareSigner(),
): Promise<{ path: string; bytes: Buffer; lines: LineInfo[]; signer: CheckpointSigner }> {
  const path = join(dir, 'audit.log');
  const sink = await FileAuditSink.open({ path, signer, checkpointEvery: every });
  for (let i = 1; i <= n; i++) await sink.append(rec(i));
  await sink.close();
  const bytes = readFileSync(path);
  return { path, bytes, lines: linesOf(bytes), signer };
}
