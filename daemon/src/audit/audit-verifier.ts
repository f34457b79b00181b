/**
 * Offline verification of an audit log (every segment, in order): every line canonical, seqs
 * consecutive from 1, every hash chained from the genesis, every checkpoint covering the entry
 * before it and signed by a pinned key with the algorithm that key's type dictates (the `alg`
 * an entry names must agree, it never chooses), and every exported checkpoint (anchor) present.
 * Stops at the first bad entry and says where (seq, file, byte offset) and what is wrong.
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { parseEntryLine } from './audit-parse.ts';
import { GENESIS_HASH, MAX_LINE_BYTES, canonicalBytes, chainHash } from './audit-record.ts';
import type { ExportedCheckpoint } from './audit-reader.ts';
import { readAuditLines, splitAuditLines } from './audit-reader.ts';
import type { RawLine } from './audit-reader.ts';
import { checkpointAlgOf, checkpointStatement, keyIdOf, verifyCheckpointSignature } from './checkpoint.ts';

export interface VerifyOptions {
  /** PEM public keys checkpoints may be signed with. Without any, signatures are not checked. */
  readonly publicKeys?: readonly string[];
  /** Exported checkpoints that must all be found in the chain (detects truncation). */
  readonly anchors?: readonly ExportedCheckpoint[];
  /**
   * Entries after the last checkpoint verified with a pinned key are an error (a forged or
   * unexplained tail), not a warning. `keybroker audit verify` sets this unless
   * `--allow-unsigned-tail`; without publicKeys every entry is unsigned.
   */
  readonly requireSignedTail?: boolean;
}

/** The first problem found. `seq` is the seq expected at that point. */
export interface VerifyProblem {
  readonly seq: number;
  readonly offset: number;
  readonly problem: string;
  /** The segment file the offset is in, when the log has more than one. */
  readonly file?: string;
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
  /** Entries after the last verified checkpoint (seq range), when there are any. */
  readonly unsignedTail?: { readonly fromSeq: number; readonly toSeq: number };
}

/**
 * Verify the audit log at `path` (its rotated segments, then the file). Never throws for file
 * content; only for an unreadable file.
 */
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
  /** Seq of the last checkpoint whose signature a pinned key verified. */
  let lastSigned = 0;
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
    ...(seq > lastSigned ? { unsignedTail: { fromSeq: lastSigned + 1, toSeq: seq } } : {}),
  });
  for await (const line of lines) {
    const bad = (problem: string) =>
      report({ seq: seq + 1, offset: line.offset, problem, ...(line.file ? { file: line.file } : {}) });
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
        const keyAlg = checkpointAlgOf(key) ?? `unsupported ${key.asymmetricKeyType ?? 'key'}`;
        if (entry.alg !== keyAlg) {
          return bad(`checkpoint names alg ${entry.alg} but the pinned key is ${keyAlg}`);
        }
        const stmt = checkpointStatement(entry.coveredSeq, entry.coveredHash, entry.timeMs);
        if (!verifyCheckpointSignature(keyAlg, key, stmt, Buffer.from(entry.signature, 'base64'))) {
          return bad(`checkpoint signature invalid (${entry.alg})`);
        }
        verified += 1;
        lastSigned = entry.seq;
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
  if (seq > lastSigned && opts.requireSignedTail === true) {
    const why =
      keys.size === 0 ? 'no pinned key to check checkpoints with' : 'not covered by a signed checkpoint';
    return report({
      seq: lastSigned + 1,
      offset: bytes,
      problem:
        `unsigned tail: entries ${lastSigned + 1}..${seq} are ${why} (appended after the last ` +
        'checkpoint: forged, or left by a crash; --allow-unsigned-tail accepts them)',
    });
  }
  if (seq > 0 && lastType !== 'checkpoint') {
    warnings.push('chain does not end with a checkpoint: entries after the last one could have been cut off');
  }
  return report();
}
