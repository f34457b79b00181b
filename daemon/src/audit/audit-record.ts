/**
 * Audit entries, their canonical bytes and their one-line JSON form. The byte layout is drawn in
 * FORMAT.md next to this file; change neither without a new layout version.
 */
import { createHash, hash } from 'node:crypto';
import { KbError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import type { AuditRecordInput } from './audit-sink.ts';

/** Layout version of the canonical bytes and of the JSON line (`v`). */
export const AUDIT_FORMAT_VERSION = 1;
/** hash_0: SHA-256 of this ASCII string. */
export const GENESIS_HASH: Buffer = createHash('sha256').update('keybroker audit chain v1 genesis').digest();

/** Most bytes a stored line may have; longer lines are corrupt by definition. */
export const MAX_LINE_BYTES = 16 * 1024;

/** Per-field limits in UTF-16 code units; inputs are cut to these (audit must not fail on length). */
export const FIELD_LIMITS = {
  requestId: 128,
  identity: 512,
  org: 64,
  tenant: 64,
  rpc: 128,
  customer: 64,
  keyName: 128,
  code: 64,
  reason: 512,
  note: 1024,
  alg: 64,
} as const;

export type AuditResult = AuditRecordInput['result'];
const RESULTS: readonly AuditResult[] = ['ok', 'denied', 'error', 'intent'];

interface EntryBase {
  readonly seq: number;
  /** Milliseconds since the epoch (UTC). */
  readonly timeMs: number;
}
export interface RecordEntry extends EntryBase {
  readonly type: 'record';
  readonly requestId: string;
  readonly identity: string;
  readonly org?: string;
  readonly tenant?: string;
  readonly rpc: string;
  readonly customer?: string;
  readonly keyName?: string;
  readonly keyVersion?: number;
  readonly result: AuditResult;
  readonly code?: string;
  readonly reason?: string;
}
export interface CheckpointEntry extends EntryBase {
  readonly type: 'checkpoint';
  /** The entry this checkpoint signs: always seq - 1. */
  readonly coveredSeq: number;
  readonly coveredHash: string;
  readonly alg: string;
  /** SHA-256 (hex) of the signer's SubjectPublicKeyInfo DER. */
  readonly keyId: string;
  /** Base64 signature over the checkpoint statement (see checkpoint.ts). */
  readonly signature: string;
}
export interface NoteEntry extends EntryBase {
  readonly type: 'note';
  readonly note: string;
}
export type AuditEntry = RecordEntry | CheckpointEntry | NoteEntry;
/** An entry before it has a place in the chain. */
export type UnsequencedEntry =
  Omit<RecordEntry, 'seq'> | Omit<CheckpointEntry, 'seq'> | Omit<NoteEntry, 'seq'>;

// Secrets must never reach the audit log; reasons are free text, so scrub what looks like one.
const REDACTIONS: readonly [RegExp, string][] = [
  [/\b(pin|password|passphrase|secret|token)\b(\s*[=:]\s*)\S+/gi, '$1$2[redacted]'],
  [/[A-Za-z0-9+/_-]{32,}={0,2}/g, '[redacted]'],
];

// Control characters would let a field forge terminal output or fake line structure.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/g;

// eslint-disable-next-line no-control-regex
const HAS_CONTROL = /[\u0000-\u001f\u007f]/;

/** Clean a free-text or identifier field: cut to `max`, no control characters, well-formed UTF-16. */
export function cleanText(s: string, max: number): string {
  // Most fields are already clean (ids, names, URIs): return them without three string copies.
  if (s.length <= max && s.isWellFormed() && !HAS_CONTROL.test(s)) return s;
  return s.slice(0, max).toWellFormed().replace(CONTROL, ' ');
}

/** Redacted reasons by input: reasons repeat (policy rule names), the regexes cost per call. */
const REDACTED = new Map<string, string>();
const REDACTED_MAX = 512;

/** Reason text with anything that looks like key material, a PIN or a token replaced. */
export function redactReason(reason: string): string {
  const known = REDACTED.get(reason);
  if (known !== undefined) return known;
  let r = reason;
  for (const [rx, sub] of REDACTIONS) r = r.replace(rx, sub);
  r = cleanText(r, FIELD_LIMITS.reason);
  // Only short reasons are kept (bounded memory); a full map starts over.
  if (reason.length <= 256) {
    if (REDACTED.size >= REDACTED_MAX) REDACTED.clear();
    REDACTED.set(reason, r);
  }
  return r;
}

/** Validate and clean a sink input into an unsequenced record entry. */
export function recordFromInput(input: AuditRecordInput): Omit<RecordEntry, 'seq'> {
  const t = input.time instanceof Date ? input.time.getTime() : NaN;
  if (!Number.isFinite(t)) throw new KbError('INVALID_ARGUMENT', 'audit time must be a valid Date');
  if (!RESULTS.includes(input.result))
    throw new KbError('INVALID_ARGUMENT', 'audit result must be ok|denied|error|intent');
  if (
    typeof input.rpc !== 'string' ||
    typeof input.identity !== 'string' ||
    typeof input.requestId !== 'string'
  ) {
    throw new KbError('INVALID_ARGUMENT', 'audit rpc, identity and requestId must be strings');
  }
  const kv = input.keyVersion;
  if (kv !== undefined && !(Number.isInteger(kv) && kv >= 0 && kv <= 0xffff_ffff)) {
    throw new KbError('INVALID_ARGUMENT', 'audit keyVersion must be an integer in [0, 2^32-1]');
  }
  const opt = (k: 'org' | 'tenant' | 'customer' | 'keyName' | 'code', v: string | undefined) =>
    v === undefined ? undefined : cleanText(String(v), FIELD_LIMITS[k]);
  // Built by assignment, not by spreading one object per optional field (this runs per call).
  const e: { -readonly [K in keyof Omit<RecordEntry, 'seq'>]: Omit<RecordEntry, 'seq'>[K] } = {
    type: 'record',
    timeMs: t,
    requestId: cleanText(input.requestId, FIELD_LIMITS.requestId),
    identity: cleanText(input.identity, FIELD_LIMITS.identity),
    rpc: cleanText(input.rpc, FIELD_LIMITS.rpc),
    result: input.result,
  };
  const org = opt('org', input.org);
  if (org !== undefined) e.org = org;
  const tenant = opt('tenant', input.tenant);
  if (tenant !== undefined) e.tenant = tenant;
  const customer = opt('customer', input.customer);
  if (customer !== undefined) e.customer = customer;
  const keyName = opt('keyName', input.keyName);
  if (keyName !== undefined) e.keyName = keyName;
  if (kv !== undefined) e.keyVersion = kv;
  const code = opt('code', input.code as ErrorCode | undefined);
  if (code !== undefined) e.code = code;
  if (input.reason !== undefined) e.reason = redactReason(String(input.reason));
  return e;
}

const TYPE_BYTE = { record: 1, checkpoint: 2, note: 3 } as const;
const RESULT_BYTE = { ok: 1, denied: 2, error: 3, intent: 4 } as const;

/** Writer for the canonical layout (big-endian integers, u16-length-prefixed strings) into one buffer. */
class Canon {
  #buf = Buffer.allocUnsafe(1024);
  #len = 0;
  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
  u8(n: number): void {
    this.#room(1);
    this.#len = this.#buf.writeUInt8(n, this.#len);
  }
  u16(n: number): void {
    this.#room(2);
    this.#len = this.#buf.writeUInt16BE(n, this.#len);
  }
  u32(n: number): void {
    this.#room(4);
    this.#len = this.#buf.writeUInt32BE(n, this.#len);
  }
  u64(n: number): void {
    // Safe integers only (checked by callers); two u32 halves avoid a BigInt per field.
    this.u32(Math.floor(n / 0x1_0000_0000));
    this.u32(n >>> 0);
  }
  i64(n: number): void {
    if (n >= 0) return this.u64(n);
    this.#room(8);
    this.#len = this.#buf.writeBigInt64BE(BigInt(n), this.#len);
  }
  raw(b: Uint8Array): void {
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }
  str(s: string | undefined): void {
    if (s === undefined) return this.u16(0xffff);
    const n = Buffer.byteLength(s, 'utf8');
    if (n >= 0xffff) throw new KbError('INVALID_ARGUMENT', 'audit field too long');
    this.u16(n);
    this.#room(n);
    this.#len += this.#buf.write(s, this.#len, 'utf8');
  }
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }
}

function hex32(name: string, h: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(h))
    throw new KbError('INVALID_ARGUMENT', `${name} must be 64 lowercase hex digits`);
  return Buffer.from(h, 'hex');
}

/** The canonical bytes of an entry (FORMAT.md, "Canonical entry bytes"). */
export function canonicalBytes(e: AuditEntry): Buffer {
  const c = new Canon();
  c.u8(AUDIT_FORMAT_VERSION);
  c.u8(TYPE_BYTE[e.type]);
  c.u64(e.seq);
  c.i64(e.timeMs);
  if (e.type === 'record') {
    for (const s of [e.requestId, e.identity, e.org, e.tenant, e.rpc, e.customer, e.keyName]) c.str(s);
    if (e.keyVersion === undefined) c.u8(0);
    else {
      c.u8(1);
      c.u32(e.keyVersion);
    }
    c.u8(RESULT_BYTE[e.result]);
    c.str(e.code);
    c.str(e.reason);
  } else if (e.type === 'checkpoint') {
    c.u64(e.coveredSeq);
    c.raw(hex32('coveredHash', e.coveredHash));
    c.str(e.alg);
    c.raw(hex32('keyId', e.keyId));
    const sig = Buffer.from(e.signature, 'base64');
    c.u16(sig.length);
    c.raw(sig);
  } else {
    c.str(e.note);
  }
  return c.bytes();
}

/** hash_i = SHA-256(hash_{i-1} ‖ canonical bytes of entry i). */
export function chainHash(prev: Uint8Array, canonical: Uint8Array): Buffer {
  // One-shot hash over one buffer: several times cheaper than createHash() per record.
  const both = Buffer.allocUnsafe(prev.length + canonical.length);
  both.set(prev, 0);
  both.set(canonical, prev.length);
  return hash('sha256', both, 'buffer');
}

/** The stored line (JSON, fixed key order, no spaces, ends with "\n"). */
export function entryLine(e: AuditEntry, hash: string): string {
  const o: Record<string, unknown> = { v: AUDIT_FORMAT_VERSION, seq: e.seq, type: e.type };
  o.time = new Date(e.timeMs).toISOString();
  if (e.type === 'record') {
    o.requestId = e.requestId;
    o.identity = e.identity;
    if (e.org !== undefined) o.org = e.org;
    if (e.tenant !== undefined) o.tenant = e.tenant;
    o.rpc = e.rpc;
    if (e.customer !== undefined) o.customer = e.customer;
    if (e.keyName !== undefined) o.keyName = e.keyName;
    if (e.keyVersion !== undefined) o.keyVersion = e.keyVersion;
    o.result = e.result;
    if (e.code !== undefined) o.code = e.code;
    if (e.reason !== undefined) o.reason = e.reason;
  } else if (e.type === 'checkpoint') {
    o.coveredSeq = e.coveredSeq;
    o.coveredHash = e.coveredHash;
    o.alg = e.alg;
    o.keyId = e.keyId;
    o.signature = e.signature;
  } else {
    o.note = e.note;
  }
  o.hash = hash;
  return `${JSON.stringify(o)}\n`;
}
