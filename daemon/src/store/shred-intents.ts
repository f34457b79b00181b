/**
 * Shred intents (registry table `shred_intents`, migration 2): a DestroyTenant/DestroyCustomer
 * is recorded here, durably, BEFORE its first destruction (the HSM-resident asymmetric keys go
 * first). From then on the destroy is committed: a crash, or a failure half-way, is resumed at
 * the next open and by the shred retry timer, never left as an active half-destroyed target.
 *
 *   pending    recorded; nothing or only token keys destroyed yet
 *   started    the shred_log row exists (shred_id), in the same transaction as the tombstone
 *              (tenant) or as the shred row (customer); the shredder's own resume finishes it
 *   abandoned  the target was already gone when the intent was run (a concurrent destroy)
 *
 * The approval a destroy executed is kept with it, so a retry with that approval id gets the
 * resumed shred's receipt instead of "approval is executed".
 */
import type { Raw } from './registry-rows.ts';
import type { RegistryStore } from './registry-store.ts';

export interface ShredIntentRow {
  readonly id: number;
  readonly kind: 'tenant' | 'customer';
  readonly org: string;
  readonly tenant: string;
  readonly customer: string | null;
  readonly approvalId: string | null;
  readonly state: 'pending' | 'started' | 'abandoned';
  readonly requestedAt: string;
  readonly shredId: number | null;
}

export const intentOf = (r: Raw): ShredIntentRow => ({
  id: r.id as number,
  kind: r.kind as ShredIntentRow['kind'],
  org: r.org as string,
  tenant: r.tenant as string,
  customer: (r.customer as string | null) ?? null,
  approvalId: (r.approval_id as string | null) ?? null,
  state: r.state as ShredIntentRow['state'],
  requestedAt: r.requested_at as string,
  shredId: (r.shred_id as number | null) ?? null,
});

export class ShredIntents {
  readonly #reg: RegistryStore;

  constructor(reg: RegistryStore) {
    this.#reg = reg;
  }

  /** Record a destroy before it destroys anything (one durable transaction). */
  insert(
    i: Pick<ShredIntentRow, 'kind' | 'org' | 'tenant' | 'customer' | 'approvalId' | 'requestedAt'>,
  ): number {
    const r = this.#reg
      .st(
        `INSERT INTO shred_intents (kind, org, tenant, customer, approval_id, state, requested_at)
           VALUES (?, ?, ?, ?, ?, 'pending', ?)`,
      )
      .run(i.kind, i.org, i.tenant, i.customer, i.approvalId, i.requestedAt);
    return Number(r.lastInsertRowid);
  }

  /** The intent's shred row exists; call inside the transaction that creates it. */
  started(id: number, shredId: number): void {
    this.#reg
      .st("UPDATE shred_intents SET state = 'started', shred_id = ? WHERE id = ? AND state = 'pending'")
      .run(shredId, id);
  }

  abandon(id: number): void {
    this.#reg.st("UPDATE shred_intents SET state = 'abandoned' WHERE id = ? AND state = 'pending'").run(id);
  }

  get(id: number): ShredIntentRow | undefined {
    const r = this.#reg.st('SELECT * FROM shred_intents WHERE id = ?').get(id) as Raw | undefined;
    return r && intentOf(r);
  }

  listPending(): ShredIntentRow[] {
    return (
      this.#reg.st("SELECT * FROM shred_intents WHERE state = 'pending' ORDER BY id").all() as Raw[]
    ).map(intentOf);
  }

  /** The latest intent that is not abandoned and executes `approvalId`. */
  byApproval(approvalId: string): ShredIntentRow | undefined {
    const r = this.#reg
      .st(
        "SELECT * FROM shred_intents WHERE approval_id = ? AND state != 'abandoned' ORDER BY id DESC LIMIT 1",
      )
      .get(approvalId) as Raw | undefined;
    return r && intentOf(r);
  }
}
