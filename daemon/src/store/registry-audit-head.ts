/**
 * The audit log's pinned head in the registry (migration 3): one row, the seq and chain hash of
 * the last signed checkpoint and whether the daemon stopped cleanly. Shaped like the audit
 * sink's AuditHeadStore (store does not import audit).
 */
import type { RegistryStore } from './registry-store.ts';

/** One pinned head row. */
export interface AuditHeadRow {
  readonly seq: number;
  readonly hash: string;
  readonly state: 'running' | 'stopped' | 'reset';
}

export class RegistryAuditHead {
  readonly #r: RegistryStore;
  /** A worker's chain (serve --workers: "w1", ...); undefined: the single process's log. */
  readonly #chain: string | undefined;

  constructor(registry: RegistryStore, chain?: string) {
    this.#r = registry;
    this.#chain = chain;
  }

  load(): AuditHeadRow | undefined {
    const row = (
      this.#chain === undefined
        ? this.#r.st('SELECT seq, hash, state FROM audit_head WHERE id = 1').get()
        : this.#r.st('SELECT seq, hash, state FROM audit_chain_heads WHERE chain = ?').get(this.#chain)
    ) as AuditHeadRow | undefined;
    return row === undefined ? undefined : { seq: row.seq, hash: row.hash, state: row.state };
  }

  save(head: AuditHeadRow): void {
    if (this.#chain !== undefined) {
      this.#r
        .st(
          `INSERT INTO audit_chain_heads (chain, seq, hash, state, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
             state = excluded.state, updated_at = excluded.updated_at`,
        )
        .run(this.#chain, head.seq, head.hash, head.state, new Date().toISOString());
      return;
    }
    this.#r
      .st(
        `INSERT INTO audit_head (id, seq, hash, state, updated_at) VALUES (1, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, state = excluded.state,
           updated_at = excluded.updated_at`,
      )
      .run(head.seq, head.hash, head.state, new Date().toISOString());
  }

  /** After an operator has investigated a refused open: the next open pins what it finds. */
  reset(): AuditHeadRow | undefined {
    const was = this.load();
    if (was !== undefined) this.save({ ...was, state: 'reset' });
    return was;
  }
}
