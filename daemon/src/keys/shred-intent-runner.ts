/**
 * DestroyTenant/DestroyCustomer as committed operations: the intent is recorded durably (see
 * store/shred-intents.ts) before the first destruction (the HSM-resident asymmetric keys), then
 * the asymmetric keys and the shredder run. An intent a crash or a failure left pending is run
 * again at open and from the shred retry timer until its shred exists; the shredder's own
 * resume finishes it from there. While an intent is pending its target serves no data-plane
 * call (Hierarchy.shredPending), so no half-destroyed tenant or customer is ever in use.
 */
import { KbError } from '../errors.ts';
import { customerId, orgId, tenantId } from '../ids.ts';
import type { CustomerId, TenantRef } from '../ids.ts';
import { ShredIntents } from '../store/shred-intents.ts';
import type { ShredIntentRow } from '../store/shred-intents.ts';
import type { AsymmetricKeys } from './asymmetric-keys.ts';
import type { Hierarchy } from './hierarchy.ts';
import type { ShredOptions, ShredReceipt } from './key-broker-api.ts';
import { NO_SHRED_KEYS } from './shredder.ts';
import type { Shredder } from './shredder.ts';

export class ShredIntentRunner {
  readonly #h: Hierarchy;
  readonly #shred: Shredder;
  readonly #asym: AsymmetricKeys | undefined;
  readonly #intents: ShredIntents;
  /** Intents a live request or a resume pass is running now. */
  readonly #running = new Map<number, Promise<ShredReceipt | undefined>>();

  constructor(h: Hierarchy, shred: Shredder, asym: AsymmetricKeys | undefined) {
    this.#h = h;
    this.#shred = shred;
    this.#asym = asym;
    this.#intents = new ShredIntents(h.d.registry);
    for (const i of this.#intents.listPending()) this.#h.markShredPending(i.org, i.tenant, i.customer);
  }

  destroyTenant(ref: TenantRef, opts: ShredOptions = {}): Promise<ShredReceipt> {
    this.#h.activeTenant(ref.org, ref.tenant); // NOT_FOUND before anything is recorded
    return this.#record('tenant', ref, null, opts);
  }

  destroyCustomer(ref: TenantRef, customer: CustomerId, opts: ShredOptions = {}): Promise<ShredReceipt> {
    const t = this.#h.activeTenant(ref.org, ref.tenant);
    const c = this.#h.customerRow(t, customer);
    if (!c || c.state !== 'active') throw new KbError('NOT_FOUND', 'customer');
    return this.#record('customer', ref, customer, opts);
  }

  async #record(
    kind: 'tenant' | 'customer',
    ref: TenantRef,
    customer: string | null,
    opts: ShredOptions,
  ): Promise<ShredReceipt> {
    // A destroy of this target that is recorded and unfinished (e.g. it failed half-way): join it.
    const same = this.#intents
      .listPending()
      .find(
        (i) => i.kind === kind && i.org === ref.org && i.tenant === ref.tenant && i.customer === customer,
      );
    const id =
      same?.id ??
      this.#intents.insert({
        kind,
        org: ref.org,
        tenant: ref.tenant,
        customer,
        approvalId: opts.approvalId ?? null,
        requestedAt: this.#h.d.now().toISOString(),
      });
    this.#h.markShredPending(ref.org, ref.tenant, customer);
    const r = await this.#runOnce(this.#intents.get(id) as ShredIntentRow);
    if (r === undefined) throw new KbError('NOT_FOUND', kind);
    return r;
  }

  /** Run an intent unless it runs already (then join it); undefined if its target was gone. */
  #runOnce(i: ShredIntentRow): Promise<ShredReceipt | undefined> {
    let p = this.#running.get(i.id);
    if (p === undefined) {
      p = this.#run(i).finally(() => this.#running.delete(i.id));
      this.#running.set(i.id, p);
    }
    return p;
  }

  async #run(i: ShredIntentRow): Promise<ShredReceipt | undefined> {
    const ref = { org: orgId(i.org), tenant: tenantId(i.tenant) };
    if (!this.#targetActive(i)) {
      // A concurrent destroy got there first: nothing of ours was destroyed.
      this.#intents.abandon(i.id);
      this.#h.clearShredPending(i.org, i.tenant, i.customer);
      return undefined;
    }
    try {
      if (i.kind === 'tenant') {
        try {
          const owned = (await this.#asym?.beforeTenantShred(ref)) ?? NO_SHRED_KEYS;
          return await this.#shred.destroyTenant(i.org, i.tenant, owned, i.id);
        } finally {
          this.#asym?.afterTenantShred(ref);
        }
      }
      const customer = customerId(i.customer as string);
      try {
        const owned = (await this.#asym?.beforeCustomerShred(ref, customer)) ?? NO_SHRED_KEYS;
        return await this.#shred.destroyCustomer(i.org, i.tenant, customer, owned, i.id);
      } finally {
        this.#asym?.afterCustomerShred(ref, customer);
      }
    } finally {
      // Still pending with its target gone: another destroy of the same target shredded it.
      if (this.#intents.get(i.id)?.state === 'pending' && !this.#targetActive(i)) this.#intents.abandon(i.id);
      if (this.#intents.get(i.id)?.state !== 'pending')
        this.#h.clearShredPending(i.org, i.tenant, i.customer);
    }
  }

  #targetActive(i: ShredIntentRow): boolean {
    const t = this.#h.tenantRow(i.org, i.tenant);
    if (!t || t.state !== 'active') return false;
    if (i.customer === null) return true;
    return this.#h.customerRow(t, i.customer)?.state === 'active';
  }

  /** Whether some recorded destroy has not reached its shredder yet (and nothing runs it). */
  get hasPending(): boolean {
    return this.#intents.listPending().some((i) => !this.#running.has(i.id));
  }

  /** Run every pending intent (at open, from the retry timer); one failing does not stop the rest. */
  async resume(): Promise<void> {
    let first: unknown;
    for (const i of this.#intents.listPending()) {
      if (this.#running.has(i.id)) continue;
      await this.#runOnce(i).catch((err: unknown) => {
        first ??= err;
        return undefined;
      });
    }
    if (first !== undefined) throw first;
  }

  /** See KeyBrokerApi.shredReceiptForApproval. */
  async receiptForApproval(
    approvalId: string,
    target: { org: string; tenant: string; customer?: string },
  ): Promise<ShredReceipt | undefined> {
    const i = this.#intents.byApproval(approvalId);
    if (
      i === undefined ||
      i.org !== target.org ||
      i.tenant !== target.tenant ||
      (i.customer ?? undefined) !== target.customer
    )
      return undefined;
    if (i.shredId !== null) return this.#shred.completed(i.shredId);
    const r = await this.#runOnce(i);
    if (r !== undefined) return r;
    const again = this.#intents.get(i.id);
    return again?.shredId != null ? this.#shred.completed(again.shredId) : undefined;
  }
}
