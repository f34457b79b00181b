/**
 * How every PostgreSQL connection of the broker is made: the URL, an optional CA bundle (the
 * server's certificate is then verified, never merely accepted) and an optional password read
 * from a file, plus the type parsers the store relies on.
 */
import pg from 'pg';

export interface PgConnectionOptions {
  /** postgres://user@host:port/db (no password here: use `password`). */
  readonly url: string;
  /** PEM CA bundle: when set, TLS is required and the server certificate is verified against it. */
  readonly tlsCa?: string;
  readonly password?: string;
  /** Per-connection application_name (shows which broker holds a lock in pg_stat_activity). */
  readonly applicationName?: string;
}

const INT8_OID = 20;

/** BIGINT columns (usage counts, limits) come back as numbers; a value past 2^53 is refused. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`BIGINT value ${text} exceeds 2^53`);
  return n;
}

const getTypeParser = ((oid: number, format?: 'text' | 'binary') =>
  oid === INT8_OID && format !== 'binary'
    ? parseInt8
    : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser;

/** The pg client configuration for these options (pool and dedicated clients alike). */
export function pgClientConfig(o: PgConnectionOptions): pg.ClientConfig {
  return {
    connectionString: o.url,
    types: { getTypeParser },
    ...(o.tlsCa !== undefined ? { ssl: { ca: o.tlsCa, rejectUnauthorized: true } } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
    ...(o.applicationName !== undefined ? { application_name: o.applicationName } : {}),
  };
}

/** Anything that runs a parameterised query: the pool, or one checked-out client in a transaction. */
export interface PgQueryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** A row as pg returns it (snake_case columns). */
export type PgRaw = Record<string, unknown>;
