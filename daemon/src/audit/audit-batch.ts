/** Entries chained onto the log's head and encoded as the lines of one write (group commit). */
import type { AuditPosition } from './audit-sink.ts';
import { FIELD_LIMITS, canonicalBytes, chainHash, cleanText, entryLine } from './audit-record.ts';
import type { AuditEntry, UnsequencedEntry } from './audit-record.ts';

/** A batch ready to write: its bytes, each entry's position, and the chain head after it. */
export interface AuditBatch {
  readonly data: Buffer;
  readonly positions: AuditPosition[];
  readonly seq: number;
  readonly hash: Buffer;
}

/** Number `entries` after `seq`, chain them after `hash` and encode them as JSON lines. */
export function auditBatch(seq: number, hash: Buffer, entries: readonly UnsequencedEntry[]): AuditBatch {
  const lines: string[] = [];
  const positions: AuditPosition[] = [];
  for (const e of entries) {
    seq += 1;
    const entry = { ...e, seq } as AuditEntry;
    hash = chainHash(hash, canonicalBytes(entry));
    const h = hash.toString('hex');
    lines.push(entryLine(entry, h));
    positions.push({ seq, hash: h });
  }
  return { data: Buffer.from(lines.join(''), 'utf8'), positions, seq, hash };
}

/** The note that records an outage once the disk takes writes again, chained after (seq, hash). */
export function resumeNote(
  seq: number,
  hash: Buffer,
  reason: string,
  now: number,
): {
  readonly entry: AuditEntry & { readonly type: 'note'; readonly note: string };
  readonly hash: Buffer;
  readonly data: Buffer;
} {
  const entry = {
    type: 'note' as const,
    seq: seq + 1,
    timeMs: now,
    note: cleanText(`audit resumed after failure: ${reason}`, FIELD_LIMITS.note),
  };
  const next = chainHash(hash, canonicalBytes(entry));
  return { entry, hash: next, data: Buffer.from(entryLine(entry, next.toString('hex')), 'utf8') };
}
