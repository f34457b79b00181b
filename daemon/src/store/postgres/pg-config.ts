/**
 * Connection options from the `store.postgres` config section (resolved paths): the CA bundle
 * and the password are read from their files here, at start, so a bad file fails the start and
 * not the first query. The password file must be private, like the HSM PIN file.
 */
import { readFileSync, statSync } from 'node:fs';
import type { PgConnectionOptions } from './pg-connection.ts';

/** The shape of config's `store.postgres` (kept structural: store/ does not import config/). */
export interface PgConfigSection {
  readonly url: string;
  readonly tlsCaFile: string;
  readonly passwordFile: string;
}

function readField(field: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${field}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
      cause: e,
    });
  }
}

/** Options for PostgresStore/PgNotifier/PgAdvisoryLease; throws naming the bad field. */
export function pgOptionsFromConfig(s: PgConfigSection, applicationName?: string): PgConnectionOptions {
  if (s.url === '') throw new Error('store.postgres.url: empty');
  let password: string | undefined;
  if (s.passwordFile !== '') {
    const text = readField('store.postgres.passwordFile', s.passwordFile);
    if ((statSync(s.passwordFile).mode & 0o077) !== 0) {
      throw new Error(
        `store.postgres.passwordFile: ${s.passwordFile} must not be readable by group or others (chmod 600)`,
      );
    }
    password = text.trim();
    if (password === '') throw new Error(`store.postgres.passwordFile: ${s.passwordFile} is empty`);
  }
  let tlsCa: string | undefined;
  if (s.tlsCaFile !== '') {
    tlsCa = readField('store.postgres.tlsCaFile', s.tlsCaFile);
    if (!tlsCa.includes('-----BEGIN CERTIFICATE-----')) {
      throw new Error(`store.postgres.tlsCaFile: ${s.tlsCaFile} holds no PEM certificate`);
    }
  }
  return {
    url: s.url,
    ...(tlsCa !== undefined ? { tlsCa } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(applicationName !== undefined ? { applicationName } : {}),
  };
}
