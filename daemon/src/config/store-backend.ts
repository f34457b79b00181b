/**
 * Rules for the `store` section that a JSON Schema cannot say well, and the one refusal of this
 * build: the PostgreSQL backend (daemon/src/store/postgres/) exists and is tested, but the keys
 * layer does not run on it yet, so `serve` must not start as if it did.
 */
import type { Config } from './config-schema.ts';

/** What is wrong with the store settings, each naming its field (empty: nothing). */
export function storeConfigProblems(cfg: Config): string[] {
  const out: string[] = [];
  const { backend, postgres } = cfg.store;
  if (backend === 'postgres' && postgres.url === '') {
    out.push('store.postgres.url: required when store.backend is postgres');
  }
  if (postgres.url !== '') {
    let url: URL | undefined;
    try {
      url = new URL(postgres.url);
    } catch {
      out.push('store.postgres.url: not a valid URL');
    }
    // A password in the URL would sit in the config file and in the environment of every child.
    if (url !== undefined && url.password !== '') {
      out.push('store.postgres.url: must not contain a password (use store.postgres.passwordFile)');
    }
  }
  return out;
}

/** Why `serve` cannot run this config in this build, or undefined when it can. */
export function unservedStoreBackend(cfg: Config): string | undefined {
  if (cfg.store.backend === 'postgres') {
    return 'store.backend=postgres is not supported by this build yet (the PostgreSQL store exists but the daemon does not run on it); use store.backend=sqlite';
  }
  return undefined;
}
