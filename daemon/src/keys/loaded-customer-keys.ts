/**
 * Which customers' asymmetric keys are loaded in memory, and which key ids. A customer shred
 * deletes the rows and CEKs those keys came from; this list lets the shred, or a later sweep when
 * another path shredded the customer, zero the loaded keys at once instead of at their cache TTL.
 */

/** One customer's loaded keys. */
export interface CustomerKeys {
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly keyIds: Set<string>;
}

/** Customers tracked at most (the oldest is dropped first; its keys still go at the cache TTL). */
export const MAX_TRACKED_CUSTOMERS = 10_000;

export class LoadedCustomerKeys {
  readonly #m = new Map<string, CustomerKeys>();
  readonly #max: number;

  constructor(max = MAX_TRACKED_CUSTOMERS) {
    this.#max = max;
  }

  /** Remember that `keyId` of this customer is being loaded. */
  note(org: string, tenant: string, customer: string, keyId: string): void {
    const k = `${org}/${tenant}/${customer}`;
    const e = this.#m.get(k) ?? { org, tenant, customer, keyIds: new Set<string>() };
    e.keyIds.add(keyId);
    this.#m.set(k, e);
    if (this.#m.size > this.#max) {
      const oldest = this.#m.keys().next().value;
      if (oldest !== undefined) this.#m.delete(oldest);
    }
  }

  /** Forget a customer; its entry, if any keys of it were loaded. */
  take(org: string, tenant: string, customer: string): CustomerKeys | undefined {
    const k = `${org}/${tenant}/${customer}`;
    const e = this.#m.get(k);
    this.#m.delete(k);
    return e;
  }

  /** Forget every customer `gone` says is gone; their entries. */
  takeGone(gone: (e: CustomerKeys) => boolean): CustomerKeys[] {
    const out: CustomerKeys[] = [];
    for (const [k, e] of this.#m) {
      if (!gone(e)) continue;
      this.#m.delete(k);
      out.push(e);
    }
    return out;
  }

  get size(): number {
    return this.#m.size;
  }
}
