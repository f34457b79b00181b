/**
 * Where audit records go. Fail-closed: `append` resolves only once the record is durable, and a
 * request must not complete (nor return its result) before that. Records never carry key bytes,
 * plaintext, ciphertext or PINs.
 */
import type { ErrorCode } from '../errors.ts';

export interface AuditRecordInput {
  readonly time: Date;
  readonly requestId: string;
  /** Caller identity URI (or "local:cli" / "system" for internal actions such as scheduled rotation). */
  readonly identity: string;
  readonly org?: string;
  readonly tenant?: string;
  readonly rpc: string;
  readonly customer?: string;
  readonly keyName?: string;
  readonly keyVersion?: number;
  /**
   * `intent`: a state-changing call is about to run (written before it, so no effect happens
   * without a record); its outcome follows in a second record with the same requestId.
   */
  readonly result: 'ok' | 'denied' | 'error' | 'intent';
  readonly code?: ErrorCode;
  readonly reason?: string;
}

/** Position of a record in the chain: sequence number and its chain hash (hex). */
export interface AuditPosition {
  readonly seq: number;
  readonly hash: string;
}

export interface AuditSink {
  append(record: AuditRecordInput): Promise<AuditPosition>;
  /** The position of the last durable record (for shred receipts). */
  head(): AuditPosition;
  health(): { readonly ok: boolean; readonly reason?: string };
  close(): Promise<void>;
}
