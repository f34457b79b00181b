/**
 * Where the chain stands when a sink opens a log: the end of the last rotated segment, the tail
 * of the active file (re-verified, linked to that segment), the active file's first seq and age
 * (for naming and rotating it), and the check against the pinned head (audit-head.ts).
 */
import { KbError } from '../errors.ts';
import { checkPinnedHead } from './audit-head.ts';
import type { AuditHeadStore, PinnedHead } from './audit-head.ts';
import { readChainTail, readFirstEntry } from './audit-file-tail.ts';
import type { ChainStart, ChainTail } from './audit-file-tail.ts';
import { auditSegments } from './audit-reader.ts';
import { GENESIS_HASH } from './audit-record.ts';

export interface OpenedChain {
  readonly tail: ChainTail;
  /** Seq of the active file's first entry (the next seq when it is empty). */
  readonly segmentStart: number;
  /** Time of the active file's first entry, or undefined when it is empty. */
  readonly segmentStartedAt: number | undefined;
  /** What to note in the log before anything else (a crash's unsigned tail, a reset pin). */
  readonly note: string | undefined;
  /** The pin to save as `running` once the log is open (undefined: no head store). */
  readonly pin: PinnedHead | undefined;
}

/** The end of the last rotated segment of `path`, or the genesis when there is none. */
async function previousSegmentsEnd(path: string): Promise<ChainStart> {
  const segments = auditSegments(path).filter((f) => f !== path);
  const last = segments.at(-1);
  if (last === undefined) return { seq: 0, hash: GENESIS_HASH };
  const t = await readChainTail(last, null);
  if (t.torn !== undefined || t.size === 0) {
    throw new KbError(
      'AUDIT_UNAVAILABLE',
      `audit segment ${last} is ${t.size === 0 ? 'empty' : 'torn'}; run "keybroker audit verify"`,
    );
  }
  return { seq: t.seq, hash: t.hash };
}

/** Read and check the chain of the log at `path` (see OpenedChain). */
export async function openChain(path: string, headStore: AuditHeadStore | undefined): Promise<OpenedChain> {
  const tail = await readChainTail(path, await previousSegmentsEnd(path));
  const first = await readFirstEntry(path);
  const pinned = headStore?.load();
  const hash = tail.hash.toString('hex');
  const note = await checkPinnedHead(path, { seq: tail.seq, hash, recent: tail.recent }, pinned);
  // A crash keeps the old pin until the start checkpoint moves it; a first start or a reset pins
  // the position found (trust on first use).
  const pin: PinnedHead | undefined =
    headStore === undefined
      ? undefined
      : pinned !== undefined && pinned.state !== 'reset'
        ? { seq: pinned.seq, hash: pinned.hash, state: 'running' }
        : { seq: tail.seq, hash, state: 'running' };
  return {
    tail,
    segmentStart: first?.seq ?? tail.seq + 1,
    segmentStartedAt: first?.timeMs,
    note,
    pin,
  };
}
