/**
 * Reading audit files offline: lines with their byte offsets, tail, query, and the export of
 * signed checkpoints (to keep elsewhere as anchors against truncation).
 */
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseEntryLine } from './audit-parse.ts';
import type { AuditEntry, CheckpointEntry, RecordEntry } from './audit-record.ts';

/** One line of the file: byte offset, text without "\n", and whether it had its "\n". */
export interface RawLine {
  readonly offset: number;
  readonly text: string;
  readonly bytes: number;
  readonly complete: boolean;
  /** False when the bytes are not valid UTF-8 (`text` then holds replacement characters). */
  readonly utf8: boolean;
  /** The segment file the line is in, when the log has more than one (offsets are per file). */
  readonly file?: string;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decode(buf: Buffer): { text: string; utf8: boolean } {
  try {
    return { text: strictUtf8.decode(buf), utf8: true };
  } catch {
    // Lossy decoding would let an edit hide behind U+FFFD: report it instead.
    return { text: buf.toString('utf8'), utf8: false };
  }
}

const SEGMENT_SUFFIX = /^\d{12}$/;

/**
 * The files of the log at `path`, oldest first: rotated segments (`<path>.<first seq, 12
 * digits>`), then the active file itself when it exists. The chain runs through them in order.
 */
export function auditSegments(path: string): string[] {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const segments = names
    .filter((n) => n.startsWith(prefix) && SEGMENT_SUFFIX.test(n.slice(prefix.length)))
    .sort()
    .map((n) => join(dir, n));
  return existsSync(path) ? [...segments, path] : segments;
}

/** The name a segment gets when the active file is rotated: the seq of its first entry. */
export function segmentPath(path: string, firstSeq: number): string {
  return `${path}.${String(firstSeq).padStart(12, '0')}`;
}

/** Stream the lines of every segment of the log at `path`, in chain order, with byte offsets. */
export async function* readAuditLines(path: string): AsyncGenerator<RawLine> {
  const files = auditSegments(path);
  // A missing log reads as the error opening it would give.
  if (files.length === 0) files.push(path);
  for (const file of files) {
    for await (const l of splitAuditLines(createReadStream(file, { highWaterMark: 1 << 20 })))
      yield files.length > 1 ? { ...l, file } : l;
  }
}

/** Split chunks of an audit file (a stream, or one buffer in an array) into lines with offsets. */
export async function* splitAuditLines(
  chunks: AsyncIterable<unknown> | Iterable<Buffer>,
): AsyncGenerator<RawLine> {
  let carry: Buffer = Buffer.alloc(0);
  let offset = 0;
  for await (const chunk of chunks) {
    let buf = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let pos = 0;
    for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a, pos)) {
      yield { offset, ...decode(buf.subarray(pos, nl)), bytes: nl - pos + 1, complete: true };
      offset += nl - pos + 1;
      pos = nl + 1;
    }
    buf = buf.subarray(pos);
    carry = Buffer.from(buf);
  }
  if (carry.length > 0) yield { offset, ...decode(carry), bytes: carry.length, complete: false };
}

/** Entries of a file that parse, skipping none silently: a bad line throws with its offset. */
export async function* readAuditEntries(
  path: string,
): AsyncGenerator<{ entry: AuditEntry; hash: string; offset: number }> {
  for await (const l of readAuditLines(path)) {
    if (!l.complete) throw new Error(`torn last line at byte ${l.offset}${l.file ? ` of ${l.file}` : ''}`);
    if (!l.utf8) throw new Error(`bad line at byte ${l.offset}: not valid UTF-8`);
    try {
      yield { ...parseEntryLine(l.text), offset: l.offset };
    } catch (err) {
      throw new Error(`bad line at byte ${l.offset}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The last `n` entries of the log (across segments when the active file holds fewer). */
export async function tailAudit(path: string, n: number): Promise<AuditEntry[]> {
  const files = auditSegments(path);
  if (files.length === 0) files.push(path);
  const out: AuditEntry[] = [];
  for (let i = files.length - 1; i >= 0 && out.length < n; i--)
    out.unshift(...(await tailFile(files[i] as string, n - out.length)));
  return out;
}

/** The last `n` entries of one file. */
async function tailFile(path: string, n: number): Promise<AuditEntry[]> {
  // Read backwards in blocks until n complete lines are in hand: tail of a large file stays cheap.
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    let start = size;
    let buf = Buffer.alloc(0);
    const BLOCK = 1 << 20;
    while (start > 0) {
      const from = Math.max(0, start - BLOCK);
      const block = Buffer.alloc(start - from);
      await fh.read(block, 0, block.length, from);
      buf = Buffer.concat([block, buf]);
      start = from;
      let count = 0;
      for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) count++;
      if (count > n) break;
    }
    if (buf.length > 0 && buf[buf.length - 1] !== 0x0a) throw new Error(`torn last line in ${path}`);
    // Drop a partial first line when the read did not reach the start of the file.
    const body = start > 0 ? buf.subarray(buf.indexOf(0x0a) + 1) : buf;
    const lines = body.toString('utf8').split('\n').slice(0, -1).slice(-n);
    return lines.map((l) => parseEntryLine(l).entry);
  } finally {
    await fh.close();
  }
}

/** Filters for `audit query`; every given field must match. */
export interface AuditQuery {
  readonly tenant?: string;
  readonly org?: string;
  readonly rpc?: string;
  readonly identity?: string;
  readonly result?: RecordEntry['result'];
  /** Epoch ms, inclusive. */
  readonly sinceMs?: number;
  readonly limit?: number;
}

/** Records matching `q`, oldest first. */
export async function queryAudit(path: string, q: AuditQuery): Promise<RecordEntry[]> {
  const out: RecordEntry[] = [];
  for await (const { entry: e } of readAuditEntries(path)) {
    if (e.type !== 'record') continue;
    if (q.tenant !== undefined && e.tenant !== q.tenant) continue;
    if (q.org !== undefined && e.org !== q.org) continue;
    if (q.rpc !== undefined && e.rpc !== q.rpc && !e.rpc.endsWith(`/${q.rpc}`)) continue;
    if (q.identity !== undefined && e.identity !== q.identity) continue;
    if (q.result !== undefined && e.result !== q.result) continue;
    if (q.sinceMs !== undefined && e.timeMs < q.sinceMs) continue;
    out.push(e);
    if (q.limit !== undefined && out.length >= q.limit) break;
  }
  return out;
}

/** A checkpoint as exported: the entry plus its own chain hash. */
export type ExportedCheckpoint = Omit<CheckpointEntry, 'type'> & { readonly hash: string };

/** The export document: keep it apart from the audit file (it anchors the chain's length). */
export interface CheckpointExport {
  readonly format: 'keybroker-audit-checkpoints-v1';
  readonly checkpoints: readonly ExportedCheckpoint[];
}

/** All signed checkpoints of a file, for export. */
export async function exportCheckpoints(path: string): Promise<CheckpointExport> {
  const checkpoints: ExportedCheckpoint[] = [];
  for await (const { entry, hash } of readAuditEntries(path)) {
    if (entry.type !== 'checkpoint') continue;
    const { type: _type, ...rest } = entry;
    checkpoints.push({ ...rest, hash });
  }
  return { format: 'keybroker-audit-checkpoints-v1', checkpoints };
}

/** Parse an export document; throws naming what is wrong. */
export function parseCheckpointExport(text: string): CheckpointExport {
  const doc = JSON.parse(text) as Partial<CheckpointExport>;
  if (doc.format !== 'keybroker-audit-checkpoints-v1' || !Array.isArray(doc.checkpoints)) {
    throw new Error('not a keybroker-audit-checkpoints-v1 document');
  }
  for (const [i, c] of doc.checkpoints.entries()) {
    if (!Number.isSafeInteger(c.seq) || typeof c.hash !== 'string' || !/^[0-9a-f]{64}$/.test(c.hash)) {
      throw new Error(`checkpoints[${i}] needs an integer seq and a 64-hex-digit hash`);
    }
  }
  return doc as CheckpointExport;
}
