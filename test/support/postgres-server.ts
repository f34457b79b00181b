/**
 * A throwaway PostgreSQL server for one test file: Debian's server binaries (15 on bookworm), a
 * cluster initdb'd in a temp dir, listening on a free 127.0.0.1 port, its unix socket in that dir.
 * initdb and postgres refuse to run as root, so as root (CI) they run as the `postgres` user.
 * Several test files may start servers at once: each has its own dir, and a port taken between
 * our probe and the server's bind is retried on another.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
const PG_LIB = '/usr/lib/postgresql';

/** Debian's server binaries (not on PATH): bookworm's 15, or the newest major installed. */
export function pgBin(): string {
  const majors = existsSync(PG_LIB)
    ? readdirSync(PG_LIB)
        .map(Number)
        .filter((n) => Number.isInteger(n) && existsSync(join(PG_LIB, String(n), 'bin/initdb')))
    : [];
  if (majors.length === 0) {
    throw new Error(
      `no PostgreSQL server binaries under ${PG_LIB}: apt-get install postgresql (dev.sh test does)`,
    );
  }
  return join(PG_LIB, String(Math.max(...majors)), 'bin');
}

export interface PostgresServer {
  /** Superuser `kb` on database `postgres` (for setup, and for killing backends in tests). */
  readonly url: string;
  readonly port: number;
  /** The temp dir holding the cluster, its log and its unix socket (removed by stop). */
  readonly dir: string;
  /** A fresh database owned by a fresh non-superuser login role; returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** `pg_ctl stop -m fast`, then removes the cluster's dir. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Runs a server binary, as `postgres` when we are root (the binaries refuse root). */
async function asPostgres(bin: string, args: readonly string[]): Promise<void> {
  const root = userInfo().uid === 0;
  const [cmd, argv] = root
    ? ['runuser', ['-u', 'postgres', '--', join(pgBin(), bin), ...args]]
    : [join(pgBin(), bin), [...args]];
  await run(cmd, argv, { timeout: 120_000 });
}

/** Start a server; throws with the server log when it cannot start. */
export async function startPostgres(): Promise<PostgresServer> {
  pgBin(); // fail with the install hint before making a temp dir
  const dir = mkdtempSync(join(tmpdir(), 'kb-pg-'));
  // mktemp -d makes a 0700 root-owned dir: the server (as postgres) must be able to enter it.
  if (userInfo().uid === 0) chownSync(dir, uidOf('postgres'), gidOf('postgres'));
  const data = join(dir, 'pg');
  const log = join(dir, 'log');
  try {
    await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'kb', '--no-sync', '-E', 'UTF8']);
    let port = 0;
    let lastError: unknown;
    for (let attempt = 0; attempt < 5 && port === 0; attempt++) {
      const p = await freePort();
      // Throwaway data: no fsync; small buffers because several servers may run side by side.
      const opts = `-p ${p} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB -c max_connections=60`;
      try {
        await asPostgres('pg_ctl', ['-D', data, '-o', opts, '-l', log, '-w', '-t', '60', 'start']);
        port = p;
      } catch (e) {
        lastError = e; // most likely the port was taken in between: try another
      }
    }
    if (port === 0) throw new Error(`postgres did not start: ${String(lastError)}\n${readLog(log)}`);
    return server(dir, data, port);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

function server(dir: string, data: string, port: number): PostgresServer {
  const url = `postgres://kb@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    url,
    port,
    dir,
    async createDatabase(name: string): Promise<string> {
      if (!/^[a-z][a-z0-9_]{0,40}$/.test(name)) throw new Error(`bad database name ${name}`);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`CREATE ROLE ${name} LOGIN NOSUPERUSER NOBYPASSRLS`);
        await c.query(`CREATE DATABASE ${name} OWNER ${name}`);
      } finally {
        await c.end();
      }
      return `postgres://${name}@127.0.0.1:${port}/${name}`;
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      try {
        await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-4000);
  } catch {
    return '(no server log)';
  }
}

function passwdField(user: string, field: 2 | 3): number {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (line === undefined) throw new Error(`no ${user} user: apt-get install postgresql creates it`);
  return Number(line.split(':')[field]);
}
const uidOf = (user: string): number => passwdField(user, 2);
const gidOf = (user: string): number => passwdField(user, 3);
