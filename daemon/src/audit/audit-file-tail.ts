/**
 * Reading the end of an audit file when a sink reopens it: find the last complete line, check the
 * chain links of the last records, and detect a torn final line (a crash in the middle of a
 * write). Never accepts damaged complete lines: those need an operator and `keybroker audit verify`.
 */
import { open } from 'node:fs/promises';
import { KbError } from '../errors.ts';
import { parseEntryLine } from './audit-parse.ts';
import { GENESIS_HASH, MAX_LINE_BYTES, canonicalBytes, chainHash } from './audit-record.ts';

/** What the tail of an existing file says. */
export interface ChainTail {
  /** Last complete entry (seq 0 and the genesis hash for an empty file). */
  readonly seq: number;
  readonly hash: Buffer;
  /** Byte length of the complete lines. */
  readonly size: number;
  /** Bytes after the last newline (a torn write), to be cut off. */
  readonly torn?: { readonly offset: number; readonly bytes: Buffer };
  /** Entries since the last checkpoint among those read (a lower bound). */
  readonly sinceCheckpoint: number;
  /** Chain hash (hex) of each entry re-verified, by seq (the last 256 at most). */
  readonly recent: ReadonlyMap<number, string>;
}

/** Where the chain stands before a file's first entry: the genesis, or a previous segment's end. */
export interface ChainStart {
  readonly seq: number;
  readonly hash: Buffer;
}

/** How many trailing entries to re-verify on open. */
const TAIL_ENTRIES = 256;

function damaged(offset: number, problem: string): KbError {
  return new KbError(
    'AUDIT_UNAVAILABLE',
    `audit file damaged at byte ${offset}: ${problem}; run "keybroker audit verify"`,
  );
}

/**
 * Read and check the tail of `path`, whose first entry follows `before` (default: the genesis;
 * null: unknown, the first entry's link is not checked); a missing file is an empty chain
 * continuing from `before`.
 */
export async function readChainTail(
  path: string,
  before: ChainStart | null = { seq: 0, hash: GENESIS_HASH },
): Promise<ChainTail> {
  const empty = before ?? { seq: 0, hash: GENESIS_HASH };
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { seq: empty.seq, hash: empty.hash, size: 0, sinceCheckpoint: 0, recent: new Map() };
    }
    throw err;
  }
  try {
    const { size } = await fh.stat();
    const window = Math.min(size, (TAIL_ENTRIES + 2) * MAX_LINE_BYTES);
    const start = size - window;
    const buf = Buffer.alloc(window);
    if (window > 0) await fh.read(buf, 0, window, start);
    const lastNl = buf.lastIndexOf(0x0a);
    const completeEnd = lastNl + 1; // 0 when no newline in the window
    if (completeEnd === 0 && start > 0) throw damaged(start, 'no line end in the last bytes');
    const torn =
      completeEnd < window ? { offset: start + completeEnd, bytes: buf.subarray(completeEnd) } : undefined;
    // Lines fully inside the window; the first may be partial when the window starts mid-file.
    let pos = 0;
    if (start > 0) pos = buf.indexOf(0x0a) + 1;
    const lines: { offset: number; text: string; raw: Buffer }[] = [];
    while (pos < completeEnd) {
      const nl = buf.indexOf(0x0a, pos);
      lines.push({ offset: start + pos, text: buf.toString('utf8', pos, nl), raw: buf.subarray(pos, nl) });
      pos = nl + 1;
    }
    const recent = lines.slice(-TAIL_ENTRIES);
    let prev: Buffer | undefined =
      before !== null && start === 0 && recent.length === lines.length ? before.hash : undefined;
    let prevSeq = prev === undefined ? undefined : before?.seq;
    let sinceCheckpoint = 0;
    const hashes = new Map<number, string>();
    for (const l of recent) {
      let parsed;
      if (!Buffer.from(l.text, 'utf8').equals(l.raw)) throw damaged(l.offset, 'line is not valid UTF-8');
      try {
        parsed = parseEntryLine(l.text);
      } catch (err) {
        throw damaged(l.offset, (err as Error).message);
      }
      const { entry, hash } = parsed;
      if (prevSeq !== undefined && entry.seq !== prevSeq + 1) {
        throw damaged(l.offset, `seq ${entry.seq} follows seq ${prevSeq}`);
      }
      const computed = prev === undefined ? undefined : chainHash(prev, canonicalBytes(entry));
      if (computed !== undefined && computed.toString('hex') !== hash) {
        throw damaged(l.offset, `hash of seq ${entry.seq} does not match the chain`);
      }
      prev = Buffer.from(hash, 'hex');
      prevSeq = entry.seq;
      hashes.set(entry.seq, hash);
      sinceCheckpoint = entry.type === 'checkpoint' ? 0 : sinceCheckpoint + 1;
    }
    const base = { size: start + completeEnd, sinceCheckpoint, recent: hashes, ...(torn ? { torn } : {}) };
    if (prev === undefined || prevSeq === undefined) return { seq: empty.seq, hash: empty.hash, ...base };
    return { seq: prevSeq, hash: prev, ...base };
  } finally {
    await fh.close();
  }
}

/** The first entry of `path` (seq and time), or undefined for a missing or empty file. */
export async function readFirstEntry(path: string): Promise<{ seq: number; timeMs: number } | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.alloc(MAX_LINE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
    if (nl < 0) return undefined;
    try {
      const { entry } = parseEntryLine(buf.toString('utf8', 0, nl));
      return { seq: entry.seq, timeMs: entry.timeMs };
    } catch (err) {
      throw damaged(0, (err as Error).message);
    }
  } finally {
    await fh.close();
  }
}
