/**
 * Offline verification of an audit file: every line canonical, seqs consecutive from 1, every
 * hash chained from the genesis, every checkpoint covering the entry before it and signed by a
 * known key, and every exported checkpoint (anchor) present. Stops at the first bad entry and
 * says where (seq, byte offset) and what is wrong.
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { parseEntryLine } from './audit-parse.ts';
import { GENESIS_HASH, MAX_LINE_BYTES, canonicalBytes, chainHash } from './audit-record.ts';
import type { ExportedCheckpoint } from './audit-reader.ts';
import { readAuditLines, splitAuditLines } from './audit-reader.ts';
import type { RawLine } from './audit-reader.ts';
import { checkpointStatement, keyIdOf, verifyCheckpointSignature } from './checkpoint.ts';

export interface VerifyOptions {
  /** PEM public keys checkpoints may be signed with. Without any, signatures are not checked. */
  readonly publicKeys?: readonly string[];
  /** Exported checkpoints that must all be found in the chain (detects truncation). */
  readonly anchors?: readonly ExportedCheckpoint[];
}

/** The first problem found. `seq` is the seq expected at that point. */
export interface VerifyProblem {
  readonly seq: number;
  readonly offset: number;
  readonly problem: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly entries: number;
  readonly records: number;
  readonly checkpoints: number;
  readonly checkpointsVerified: number;
  /** Last good entry. */
  readonly head: { readonly seq: number; readonly hash: string };
  readonly bytes: number;
  readonly firstBad?: VerifyProblem;
  readonly warnings: readonly string[];
}

/** Verify the audit file at `path`. Never throws for file content; only for an unreadable file. */
export function verifyAuditFile(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  return verifyAuditLines(readAuditLines(path), opts);
}

/** Verify an audit file held in memory (tests, or a file fetched from elsewhere). */
export function verifyAuditBytes(bytes: Buffer, opts: VerifyOptions = {}): Promise<VerifyReport> {
  return verifyAuditLines(splitAuditLines([bytes]), opts);
}

/** Verify a stream of lines (see audit-reader.ts). */
export async function verifyAuditLines(
  lines: AsyncIterable<RawLine>,
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const keys = new Map<string, KeyObject>();
  for (const pem of opts.publicKeys ?? []) {
    const k = createPublicKey(pem);
    keys.set(keyIdOf(k), k);
  }
  const anchors = new Map<number, ExportedCheckpoint>();
  for (const a of opts.anchors ?? []) anchors.set(a.seq, a);
  const warnings: string[] = [];
  let prev = GENESIS_HASH;
  let seq = 0;
  let bytes = 0;
  let records = 0;
  let checkpoints = 0;
  let verified = 0;
  let lastType = '';
  const report = (firstBad?: VerifyProblem): VerifyReport => ({
    ok: firstBad === undefined,
    entries: seq,
    records,
    checkpoints,
    checkpointsVerified: verified,
    head: { seq, hash: prev.toString('hex') },
    bytes,
    ...(firstBad ? { firstBad } : {}),
    warnings,
  });
  for await (const line of lines) {
    const bad = (problem: string) => report({ seq: seq + 1, offset: line.offset, problem });
    if (!line.complete) return bad(`torn last line: ${line.bytes} bytes without a line end`);
    if (line.bytes > MAX_LINE_BYTES) return bad(`line of ${line.bytes} bytes exceeds ${MAX_LINE_BYTES}`);
    if (!line.utf8) return bad('line is not valid UTF-8');
    let parsed;
    try {
      parsed = parseEntryLine(line.text);
    } catch (err) {
      return bad((err as Error).message);
    }
    const { entry, hash } = parsed;
    if (entry.seq !== seq + 1) {
      return bad(`seq ${entry.seq} found where ${seq + 1} expected (entry removed, inserted or reordered)`);
    }
    const computed = chainHash(prev, canonicalBytes(entry));
    if (computed.toString('hex') !== hash) {
      return bad(`hash does not match the chain (entry ${entry.seq} altered, or the one before it)`);
    }
    if (entry.type === 'checkpoint') {
      if (entry.coveredSeq !== seq || entry.coveredHash !== prev.toString('hex')) {
        return bad(`checkpoint does not cover the entry before it (covers seq ${entry.coveredSeq})`);
      }
      const key = keys.get(entry.keyId);
      if (key !== undefined) {
        const stmt = checkpointStatement(entry.coveredSeq, entry.coveredHash, entry.timeMs);
        if (!verifyCheckpointSignature(entry.alg, key, stmt, Buffer.from(entry.signature, 'base64'))) {
          return bad(`checkpoint signature invalid (${entry.alg})`);
        }
        verified += 1;
      } else if (keys.size > 0) {
        return bad(`checkpoint signed by an unknown key ${entry.keyId.slice(0, 16)}…`);
      }
      checkpoints += 1;
    } else if (entry.type === 'record') {
      records += 1;
    }
    const anchor = anchors.get(entry.seq);
    if (anchor !== undefined && (anchor.hash !== hash || entry.type !== 'checkpoint')) {
      return bad(`differs from the exported checkpoint at seq ${anchor.seq}`);
    }
    prev = computed;
    seq = entry.seq;
    bytes += line.bytes;
    lastType = entry.type;
  }
  const beyond = [...anchors.keys()].filter((s) => s > seq).sort((a, b) => a - b);
  if (beyond.length > 0) {
    return report({
      seq: seq + 1,
      offset: bytes,
      problem: `chain ends at seq ${seq} but an exported checkpoint is at seq ${beyond[0]} (file truncated)`,
    });
  }
  if (checkpoints > 0 && keys.size === 0)
    warnings.push('checkpoint signatures not checked: no --public-key given');
  if (seq > 0 && lastType !== 'checkpoint') {
    warnings.push('chain does not end with a checkpoint: entries after the last one could have been cut off');
  }
  return report();
}
