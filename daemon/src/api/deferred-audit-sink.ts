/**
 * The audit sink the call gate holds from the first moment: until the real sink is attached
 * (it opens once the HSM that signs its checkpoints is reachable), every append fails, so no
 * call can complete unaudited (fail-closed).
 */
import { KbError } from '../errors.ts';
import type { AuditPosition, AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';

export class DeferredAuditSink implements AuditSink {
  #inner: AuditSink | undefined;

  get attached(): boolean {
    return this.#inner !== undefined;
  }

  /** Attach the real sink (once). */
  attach(sink: AuditSink): void {
    if (this.#inner !== undefined) throw new Error('audit sink already attached');
    this.#inner = sink;
  }

  append(record: AuditRecordInput): Promise<AuditPosition> {
    if (this.#inner === undefined)
      return Promise.reject(new KbError('AUDIT_UNAVAILABLE', undefined, { detail: 'not open yet' }));
    return this.#inner.append(record);
  }

  head(): AuditPosition {
    return this.#inner?.head() ?? { seq: 0, hash: '' };
  }

  health(): { readonly ok: boolean; readonly reason?: string } {
    return this.#inner?.health() ?? { ok: false, reason: 'audit log not open' };
  }

  close(): Promise<void> {
    return this.#inner?.close() ?? Promise.resolve();
  }
}
