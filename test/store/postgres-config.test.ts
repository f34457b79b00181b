// The store section of the config: defaults, validation naming the field, paths resolved against
// dataDir, `serve` refusing store.backend=postgres in this build (exit 2, clear message), and
// connection options read from their files (a private password file, a PEM CA bundle) that
// connect a PostgresStore to a real server.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError, loadConfig } from '../../daemon/src/config/load-config.ts';
import { unservedStoreBackend } from '../../daemon/src/config/store-backend.ts';
import { pgOptionsFromConfig } from '../../daemon/src/store/postgres/pg-config.ts';
import { PostgresStore } from '../../daemon/src/store/postgres/postgres-store.ts';
import { startPostgres } from '../support/postgres-server.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';

const dir = mkdtempSync(join(tmpdir(), 'kb-storecfg-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: unknown, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  chmodSync(p, mode);
  return p;
}

test('defaults: sqlite, which serve runs', () => {
  const c = loadConfig(undefined, {});
  assert.deepEqual(c.store, { backend: 'sqlite', postgres: { url: '', tlsCaFile: '', passwordFile: '' } });
  assert.equal(unservedStoreBackend(c), undefined);
});

test('postgres settings load (file and KB_STORE_* env), paths relative to dataDir, and serve refuses them', () => {
  const p = file('pg.json', {
    dataDir: 'data',
    store: { backend: 'postgres', postgres: { url: 'postgres://kb@db:5432/kb', tlsCaFile: 'pki/db-ca.pem' } },
  });
  const c = loadConfig(p, { KB_STORE_POSTGRES_PASSWORD_FILE: '/run/secrets/pg' });
  assert.equal(c.store.backend, 'postgres');
  assert.equal(c.store.postgres.tlsCaFile, join(dir, 'data/pki/db-ca.pem'));
  assert.equal(c.store.postgres.passwordFile, '/run/secrets/pg');
  assert.match(unservedStoreBackend(c) ?? '', /^store\.backend=postgres is not supported by this build yet/);
  const env = loadConfig(undefined, {
    KB_STORE_BACKEND: 'postgres',
    KB_STORE_POSTGRES_URL: 'postgresql://x@h/d',
  });
  assert.equal(env.store.postgres.url, 'postgresql://x@h/d');
});

const invalid: readonly { name: string; store: unknown; want: RegExp }[] = [
  { name: 'unknown backend', store: { backend: 'mysql' }, want: /store\.backend: must be equal to one of/ },
  { name: 'postgres without url', store: { backend: 'postgres' }, want: /store\.postgres\.url: required/ },
  {
    name: 'password in the url',
    store: { backend: 'postgres', postgres: { url: 'postgres://kb:secret@db/kb' } },
    want: /store\.postgres\.url: must not contain a password/,
  },
  {
    name: 'not a postgres url',
    store: { backend: 'postgres', postgres: { url: 'mysql://db/kb' } },
    want: /store\.postgres\.url: must match pattern/,
  },
  {
    name: 'unknown key',
    store: { postgres: { uri: 'postgres://db/kb' } },
    want: /store\.postgres: must NOT have additional properties "uri"/,
  },
  {
    name: 'wrong type',
    store: { postgres: { tlsCaFile: 5 } },
    want: /store\.postgres\.tlsCaFile: must be string/,
  },
];
for (const c of invalid) {
  test(`invalid store config is refused naming the field: ${c.name}`, () => {
    const p = file(`bad-${c.name.replaceAll(' ', '-')}.json`, { store: c.store });
    assert.throws(
      () => loadConfig(p, {}),
      (e: unknown) => e instanceof ConfigError && c.want.test(e.message),
    );
  });
}

test('keybroker serve with store.backend=postgres exits 2 with the message, before touching anything', () => {
  const p = file('serve-pg.json', {
    dataDir: 'serve-data',
    store: { backend: 'postgres', postgres: { url: 'postgres://kb@127.0.0.1:1/kb' } },
  });
  const r = spawnSync(process.execPath, ['daemon/src/cli/main.ts', 'serve', '--config', p], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 2, `exit ${String(r.status)}; stderr: ${r.stderr}`);
  assert.match(r.stderr, /keybroker serve: store\.backend=postgres is not supported by this build yet/);
  assert.equal(existsSync(join(dir, 'serve-data')), false, 'serve created its data dir before refusing');
});

test('connection options: password file must be private and non-empty, CA file must hold PEM', () => {
  const url = 'postgres://kb@db/kb';
  const ca = file('ca.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const pw = file('pw', 's3cret\n');
  assert.deepEqual(pgOptionsFromConfig({ url, tlsCaFile: ca, passwordFile: pw }, 'broker-1'), {
    url,
    tlsCa: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    password: 's3cret',
    applicationName: 'broker-1',
  });
  const cases: readonly {
    name: string;
    section: { tlsCaFile: string; passwordFile: string };
    want: RegExp;
  }[] = [
    {
      name: 'world-readable password file',
      section: { tlsCaFile: '', passwordFile: file('pw-open', 'x', 0o644) },
      want: /passwordFile: .* must not be readable by group or others/,
    },
    {
      name: 'empty password file',
      section: { tlsCaFile: '', passwordFile: file('pw-empty', '\n') },
      want: /is empty/,
    },
    {
      name: 'missing password file',
      section: { tlsCaFile: '', passwordFile: join(dir, 'nope') },
      want: /passwordFile: cannot read .*ENOENT/,
    },
    {
      name: 'CA file without a certificate',
      section: { tlsCaFile: file('ca-bad', 'hello'), passwordFile: '' },
      want: /tlsCaFile: .* holds no PEM certificate/,
    },
  ];
  for (const c of cases) {
    assert.throws(() => pgOptionsFromConfig({ url, ...c.section }), c.want, c.name);
  }
  // The password never appears in an error message.
  assert.throws(
    () => pgOptionsFromConfig({ url, tlsCaFile: '', passwordFile: file('pw-open2', 'hunter2', 0o644) }),
    (e: unknown) => e instanceof Error && !e.message.includes('hunter2'),
  );
});

test('options from the config connect a PostgresStore to a real server', async () => {
  const server = await startPostgres();
  try {
    const url = await server.createDatabase('from_config');
    const store = await PostgresStore.open(
      pgOptionsFromConfig(
        { url, tlsCaFile: '', passwordFile: file('pw-real', 'unused-with-trust') },
        'kb-cfg',
      ),
    );
    try {
      const r = await store.pool.query<{ app: string }>("SELECT current_setting('application_name') AS app");
      assert.equal(r.rows[0]?.app, 'kb-cfg');
      assert.equal(store.schemaVersion, 4);
    } finally {
      await store.close();
    }
  } finally {
    await server.stop();
  }
});
