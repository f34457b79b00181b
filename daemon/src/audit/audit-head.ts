/**
 * The pinned chain head: the seq and chain hash of the last signed checkpoint, kept outside the
 * log (the registry) and compared when the sink opens. A checkpoint is written at every start
 * and at every clean shutdown, so after a clean shutdown the log must end exactly at the pinned
 * checkpoint: entries beyond it were appended while the daemon was stopped (a forged tail), and
 * a log that ends before it was cut. After a crash (state `running`) entries beyond the pin are
 * expected; they are noted and signed at start. An operator who has investigated a refusal
 * resets the pin (`keybroker audit reset-head`), which the next start records in the log.
 */
import { KbError } from '../errors.ts';
import { parseEntryLine } from './audit-parse.ts';
import { readAuditLines } from './audit-reader.ts';
import { GENESIS_HASH } from './audit-record.ts';

/** What the registry keeps: the last signed checkpoint and whether the daemon stopped cleanly. */
export interface PinnedHead {
  /** Seq of the checkpoint entry, and its own chain hash (hex). */
  readonly seq: number;
  readonly hash: string;
  /** `running` from start to clean shutdown; `reset` after `keybroker audit reset-head`. */
  readonly state: 'running' | 'stopped' | 'reset';
}

/** Where the pin lives (the registry: store/registry-audit-head.ts). */
export interface AuditHeadStore {
  load(): PinnedHead | undefined;
  save(head: PinnedHead): void;
}

/** The command an operator runs once a refusal has been investigated. */
export const RESET_HEAD_COMMAND = 'keybroker audit reset-head --data-dir <data dir>';

function refuse(problem: string): KbError {
  return new KbError(
    'AUDIT_UNAVAILABLE',
    `audit log does not match its pinned head: ${problem}; not signing over it. Investigate with ` +
      `"keybroker audit verify --file <log> --public-key <pinned key>"; to accept the log as it is, run ` +
      `"${RESET_HEAD_COMMAND}" and start again (the break is recorded in the log)`,
  );
}

/** The chain hash (hex) of entry `seq` in the log at `path`, or undefined when it has none. */
async function hashAt(path: string, seq: number): Promise<string | undefined> {
  if (seq === 0) return GENESIS_HASH.toString('hex');
  for await (const l of readAuditLines(path)) {
    if (!l.complete || !l.utf8) return undefined;
    let parsed;
    try {
      parsed = parseEntryLine(l.text);
    } catch {
      // A damaged line where the pinned entry should be: the log was altered.
      return undefined;
    }
    if (parsed.entry.seq === seq) return parsed.hash;
    if (parsed.entry.seq > seq) return undefined;
  }
  return undefined;
}

/**
 * Compare the log's tail (last seq, and the hashes of its last entries) with the pin. Throws
 * AUDIT_UNAVAILABLE naming the recovery command on a cut or forged tail; otherwise returns a
 * note for the log when something is worth recording (a crash's unsigned tail, an operator reset).
 */
export async function checkPinnedHead(
  path: string,
  tail: { readonly seq: number; readonly hash: string; readonly recent: ReadonlyMap<number, string> },
  pinned: PinnedHead | undefined,
): Promise<string | undefined> {
  if (pinned === undefined) return undefined;
  if (pinned.state === 'reset') {
    return `pinned audit head reset by an operator (was seq ${pinned.seq} hash ${pinned.hash}); continuing at seq ${tail.seq}`;
  }
  if (tail.seq < pinned.seq) {
    return Promise.reject(
      refuse(
        `the log ends at seq ${tail.seq} but its last signed checkpoint is seq ${pinned.seq} (entries cut off)`,
      ),
    );
  }
  const found =
    tail.seq === pinned.seq ? tail.hash : (tail.recent.get(pinned.seq) ?? (await hashAt(path, pinned.seq)));
  if (found !== pinned.hash) {
    return Promise.reject(refuse(`entry ${pinned.seq} is not the pinned checkpoint (the log was altered)`));
  }
  if (tail.seq === pinned.seq) return undefined;
  if (pinned.state === 'stopped') {
    return Promise.reject(
      refuse(
        `entries ${pinned.seq + 1}..${tail.seq} were appended after the checkpoint of the last clean shutdown (a forged tail)`,
      ),
    );
  }
  return `unclean shutdown: entries ${pinned.seq + 1}..${tail.seq} after the last signed checkpoint (seq ${pinned.seq}) are signed only now`;
}
