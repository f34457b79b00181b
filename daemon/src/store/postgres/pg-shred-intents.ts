/**
 * Shred intents on PostgreSQL: the async mirror of shred-intents.ts (a destroy recorded before
 * its first destruction, so it resumes after a crash). Registry-level: no row-level security.
 */
import { intentOf } from '../shred-intents.ts';
import type { ShredIntentRow } from '../shred-intents.ts';
import type { PgRegistryStore } from './pg-registry-store.ts';

export class PgShredIntents {
  readonly #reg: PgRegistryStore;

  constructor(reg: PgRegistryStore) {
    this.#reg = reg;
  }

  /** Record a destroy before it destroys anything; returns its id. */
  async insert(
    i: Pick<ShredIntentRow, 'kind' | 'org' | 'tenant' | 'customer' | 'approvalId' | 'requestedAt'>,
  ): Promise<number> {
    const [r] = await this.#reg.query(
      `INSERT INTO shred_intents (kind, org, tenant, customer, approval_id, state, requested_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING id`,
      [i.kind, i.org, i.tenant, i.customer, i.approvalId, i.requestedAt],
    );
    return r?.id as number;
  }

  /** The intent's shred row exists; call inside the transaction that creates it. */
  async started(id: number, shredId: number): Promise<void> {
    await this.#reg.query(
      "UPDATE shred_intents SET state = 'started', shred_id = $1 WHERE id = $2 AND state = 'pending'",
      [shredId, id],
    );
  }

  async abandon(id: number): Promise<void> {
    await this.#reg.query(
      "UPDATE shred_intents SET state = 'abandoned' WHERE id = $1 AND state = 'pending'",
      [id],
    );
  }

  async get(id: number): Promise<ShredIntentRow | undefined> {
    const [r] = await this.#reg.query('SELECT * FROM shred_intents WHERE id = $1', [id]);
    return r && intentOf(r);
  }

  async listPending(): Promise<ShredIntentRow[]> {
    return (await this.#reg.query("SELECT * FROM shred_intents WHERE state = 'pending' ORDER BY id")).map(
      intentOf,
    );
  }

  /** The latest intent that is not abandoned and executes `approvalId`. */
  async byApproval(approvalId: string): Promise<ShredIntentRow | undefined> {
    const [r] = await this.#reg.query(
      "SELECT * FROM shred_intents WHERE approval_id = $1 AND state <> 'abandoned' ORDER BY id DESC LIMIT 1",
      [approvalId],
    );
    return r && intentOf(r);
  }
}
