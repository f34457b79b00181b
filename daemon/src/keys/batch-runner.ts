/** Batches as arrays of single operations: user errors per item, internal errors abort the call. */
import { KbError, toKbError } from '../errors.ts';
import type { ItemResult } from './key-broker-api.ts';

/** Largest batch accepted (bounded work per call). */
export const MAX_BATCH_ITEMS = 1000;

export class BatchRunner {
  /** The bounds every batch is held to before any item runs. */
  check(items: readonly unknown[]): void {
    if (!Array.isArray(items)) throw new KbError('INVALID_ARGUMENT', 'items must be an array');
    if (items.length > MAX_BATCH_ITEMS) throw new KbError('TOO_LARGE', `batch over ${MAX_BATCH_ITEMS} items`);
  }

  async run<I, O>(items: readonly I[], op: (item: I) => Promise<O>): Promise<ItemResult<O>[]> {
    this.check(items);
    const out: ItemResult<O>[] = [];
    for (const it of items) {
      try {
        out.push({ ok: true, value: await op(it) });
      } catch (err) {
        const e = toKbError(err);
        if (!e.isUserError) throw e;
        out.push({ ok: false, error: e });
      }
    }
    return out;
  }
}
