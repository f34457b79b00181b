/**
 * PLACEHOLDER audit sink: accepts every record and stores nothing. It exists only so the daemon
 * runs before the real hash-chained sink is wired in; the call gate already awaits `append`
 * before answering, so the real sink drops in without changes here.
 */
import type { AuditPosition, AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';

export class PlaceholderNoopAuditSink implements AuditSink {
  #seq = 0;

  append(_record: AuditRecordInput): Promise<AuditPosition> {
    this.#seq += 1;
    return Promise.resolve({ seq: this.#seq, hash: '' });
  }

  head(): AuditPosition {
    return { seq: this.#seq, hash: '' };
  }

  health(): { readonly ok: boolean; readonly reason?: string } {
    return { ok: true };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
