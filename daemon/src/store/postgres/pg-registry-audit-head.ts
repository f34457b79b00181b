/**
 * The audit log's pinned head on PostgreSQL: the async mirror of registry-audit-head.ts (one row,
 * the seq and chain hash of the last signed checkpoint and whether the daemon stopped cleanly).
 */
import type { AuditHeadRow } from '../registry-audit-head.ts';
import type { PgRegistryStore } from './pg-registry-store.ts';

export class PgRegistryAuditHead {
  readonly #r: PgRegistryStore;

  constructor(registry: PgRegistryStore) {
    this.#r = registry;
  }

  async load(): Promise<AuditHeadRow | undefined> {
    const [row] = await this.#r.query('SELECT seq, hash, state FROM audit_head WHERE id = 1');
    return row === undefined
      ? undefined
      : { seq: row.seq as number, hash: row.hash as string, state: row.state as AuditHeadRow['state'] };
  }

  async save(head: AuditHeadRow): Promise<void> {
    await this.#r.query(
      `INSERT INTO audit_head (id, seq, hash, state, updated_at) VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, state = excluded.state,
           updated_at = excluded.updated_at`,
      [head.seq, head.hash, head.state, new Date().toISOString()],
    );
  }

  /** After an operator has investigated a refused open: the next open pins what it finds. */
  async reset(): Promise<AuditHeadRow | undefined> {
    return await this.#r.tx(async (r) => {
      const head = new PgRegistryAuditHead(r);
      const was = await head.load();
      if (was !== undefined) await head.save({ ...was, state: 'reset' });
      return was;
    });
  }
}
