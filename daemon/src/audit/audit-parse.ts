/**
 * Parsing of stored audit lines. A line is accepted only if it is exactly the canonical JSON of
 * the entry it decodes to, so an edit that leaves the JSON meaning unchanged (whitespace, escapes,
 * key order) is still detected.
 */
import { AUDIT_FORMAT_VERSION, entryLine } from './audit-record.ts';
import type { AuditEntry, AuditResult } from './audit-record.ts';

/** A parsed line: the entry and the chain hash stored with it (hex). */
export interface ParsedLine {
  readonly entry: AuditEntry;
  readonly hash: string;
}

/** Why a line is not a valid stored entry (for verify messages). */
export class LineError extends Error {
  override readonly name = 'LineError';
}

type Obj = Record<string, unknown>;

function str(o: Obj, k: string, optional = false): string | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string') throw new LineError(`field "${k}" must be a string`);
  return v;
}
function int(o: Obj, k: string, optional = false): number | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new LineError(`field "${k}" must be a non-negative integer`);
  }
  return v;
}
const must = <T>(v: T | undefined): T => v as T;

/** Decode one line (without its trailing "\n"). Throws LineError saying what is wrong. */
export function parseEntryLine(text: string): ParsedLine {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new LineError('not valid JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new LineError('not a JSON object');
  const r = o as Obj;
  if (r.v !== AUDIT_FORMAT_VERSION) throw new LineError(`unknown format version ${JSON.stringify(r.v)}`);
  const seq = must(int(r, 'seq'));
  if (seq < 1) throw new LineError('seq must start at 1');
  const time = must(str(r, 'time'));
  const timeMs = Date.parse(time);
  if (!Number.isFinite(timeMs)) throw new LineError('field "time" is not a timestamp');
  const hash = must(str(r, 'hash'));
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new LineError('field "hash" must be 64 lowercase hex digits');
  let entry: AuditEntry;
  const opt = (k: string) => {
    const v = str(r, k, true);
    return v === undefined ? {} : { [k]: v };
  };
  switch (r.type) {
    case 'record': {
      const result = str(r, 'result');
      if (result !== 'ok' && result !== 'denied' && result !== 'error' && result !== 'intent') {
        throw new LineError('field "result" must be ok|denied|error|intent');
      }
      const kv = int(r, 'keyVersion', true);
      entry = {
        type: 'record',
        seq,
        timeMs,
        requestId: must(str(r, 'requestId')),
        identity: must(str(r, 'identity')),
        ...opt('org'),
        ...opt('tenant'),
        rpc: must(str(r, 'rpc')),
        ...opt('customer'),
        ...opt('keyName'),
        ...(kv === undefined ? {} : { keyVersion: kv }),
        result: result as AuditResult,
        ...opt('code'),
        ...opt('reason'),
      };
      break;
    }
    case 'checkpoint': {
      const coveredHash = must(str(r, 'coveredHash'));
      const keyId = must(str(r, 'keyId'));
      if (!/^[0-9a-f]{64}$/.test(coveredHash))
        throw new LineError('field "coveredHash" must be 64 hex digits');
      if (!/^[0-9a-f]{64}$/.test(keyId)) throw new LineError('field "keyId" must be 64 hex digits');
      const signature = must(str(r, 'signature'));
      // Canonical base64 only: unused low bits of the last character would otherwise be editable.
      if (Buffer.from(signature, 'base64').toString('base64') !== signature) {
        throw new LineError('field "signature" must be canonical base64');
      }
      entry = {
        type: 'checkpoint',
        seq,
        timeMs,
        coveredSeq: must(int(r, 'coveredSeq')),
        coveredHash,
        alg: must(str(r, 'alg')),
        keyId,
        signature,
      };
      break;
    }
    case 'note':
      entry = { type: 'note', seq, timeMs, note: must(str(r, 'note')) };
      break;
    default:
      throw new LineError(`unknown entry type ${JSON.stringify(r.type)}`);
  }
  let canonical: string;
  try {
    canonical = entryLine(entry, hash);
  } catch (err) {
    throw new LineError(`cannot encode entry: ${(err as Error).message}`);
  }
  if (canonical !== `${text}\n`)
    throw new LineError('line is not in canonical form (bytes differ from its re-encoding)');
  return { entry, hash };
}
