/**
 * Config loading: defaults, file, KB_* environment overrides, validation messages that name the
 * bad field, path resolution, and the HSM PIN (env first, then a 0600 file, never in messages).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DEFAULT_CONFIG } from '../../daemon/src/config/config-schema.ts';
import { resolveClientConfig } from '../../daemon/src/config/client-config.ts';
import {
  ConfigError,
  envNameOf,
  envOverrides,
  loadConfig,
  readHsmPin,
  takeEnvHsmPin,
} from '../../daemon/src/config/load-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'kb-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

test('defaults only: valid, paths resolved against the working directory', () => {
  const c = loadConfig(undefined, {});
  assert.equal(c.listen.port, DEFAULT_CONFIG.listen.port);
  assert.equal(c.dataDir, process.cwd());
  assert.equal(c.tls.caFile, join(process.cwd(), 'pki/ca.pem'));
});

test('a file overrides defaults; relative dataDir is relative to the file, other paths to dataDir', () => {
  const p = file('a.json', { dataDir: 'data', listen: { port: 0 }, hsm: { pinFile: '/abs/pin' } });
  const c = loadConfig(p, {});
  assert.equal(c.listen.port, 0);
  assert.equal(c.listen.host, '127.0.0.1', 'untouched sibling keeps its default');
  assert.equal(c.dataDir, join(dir, 'data'));
  assert.equal(c.tls.certFile, join(dir, 'data/pki/server.pem'));
  assert.equal(c.hsm.pinFile, '/abs/pin');
  assert.equal(c.audit.path, join(dir, 'data/audit/audit.log'));
});

test('validation errors name the bad field', () => {
  const cases: [string, unknown, RegExp][] = [
    ['typo in a key', { listen: { prot: 1 } }, /listen: must NOT have additional properties "prot"/],
    ['wrong type', { listen: { port: 'x' } }, /listen\.port: must be integer/],
    ['out of range', { listen: { port: 70000 } }, /listen\.port: must be <= 65535/],
    ['bad enum', { log: { level: 'loud' } }, /log\.level: must be equal to one of the allowed values/],
    ['bad name', { bootstrap: { org: 'Not OK', tenants: [] } }, /bootstrap\.org/],
    ['reserved tenant', { bootstrap: { org: 'acme', tenants: ['admin'] } }, /bootstrap\.tenants\.0/],
    ['unknown top-level key', { lisen: {} }, /\(root\): must NOT have additional properties "lisen"/],
    ['zero limit', { limits: { maxPlaintextBytes: 0 } }, /limits\.maxPlaintextBytes: must be >= 1/],
  ];
  for (const [name, content, re] of cases) {
    const p = file(`${name.replaceAll(' ', '-')}.json`, content);
    assert.throws(
      () => loadConfig(p, {}),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
      name,
    );
  }
  assert.throws(() => loadConfig(file('bad.json', '{nope'), {}), /not valid JSON/);
  assert.throws(() => loadConfig(join(dir, 'missing.json'), {}), /cannot read config file/);
});

test('KB_* environment variables override the file, typed by the default', () => {
  const p = file('env.json', { listen: { port: 1234 } });
  const c = loadConfig(p, {
    KB_LISTEN_PORT: '0',
    KB_LOG_LEVEL: 'debug',
    KB_METRICS_ENABLED: 'false',
    KB_BOOTSTRAP_ORG: 'acme',
    KB_BOOTSTRAP_TENANTS: 'a, b',
    KB_LIMITS_MAX_PLAINTEXT_BYTES: '2048',
  });
  assert.equal(c.listen.port, 0);
  assert.equal(c.log.level, 'debug');
  assert.equal(c.metrics.enabled, false);
  assert.deepEqual(c.bootstrap.tenants, ['a', 'b']);
  assert.equal(c.limits.maxPlaintextBytes, 2048);
  assert.throws(() => loadConfig(p, { KB_LISTEN_PORT: 'abc' }), /KB_LISTEN_PORT: expected a number/);
  assert.throws(
    () => loadConfig(p, { KB_METRICS_ENABLED: 'maybe' }),
    /KB_METRICS_ENABLED: expected true or false/,
  );
  assert.throws(() => loadConfig(p, { KB_LOG_LEVEL: 'loud' }), /log\.level/);
});

test('env names are derived from config paths and every leaf has one', () => {
  assert.equal(envNameOf(['limits', 'maxPlaintextBytes']), 'KB_LIMITS_MAX_PLAINTEXT_BYTES');
  assert.equal(envNameOf(['dataDir']), 'KB_DATA_DIR');
  const names = envOverrides().map((e) => e.env);
  for (const n of [
    'KB_HSM_PIN_FILE',
    'KB_TLS_CERT_FILE',
    'KB_KEYS_DEGRADED_SERVE_MS',
    'KB_LIFECYCLE_READY_FILE',
  ]) {
    assert.ok(names.includes(n), `${n} in the override table`);
  }
  assert.equal(new Set(names).size, names.length, 'no two paths share an env name');
});

test('HSM PIN: KB_HSM_PIN first, else a 0600 file; never echoed in errors', () => {
  const pin = join(dir, 'pin');
  writeFileSync(pin, 'S3CRET-PIN\n');
  chmodSync(pin, 0o644);
  const c = loadConfig(file('pin.json', { hsm: { pinFile: pin } }), {});
  assert.equal(readHsmPin(c, { KB_HSM_PIN: 'from-env' }), 'from-env');
  assert.throws(
    () => readHsmPin(c, {}),
    (e: unknown) => e instanceof ConfigError && /chmod 600/.test(e.message) && !e.message.includes('S3CRET'),
  );
  chmodSync(pin, 0o600);
  assert.equal(readHsmPin(c, {}), 'S3CRET-PIN');
  const missing = loadConfig(file('nopin.json', { hsm: { pinFile: join(dir, 'nope') } }), {});
  assert.throws(() => readHsmPin(missing, {}), /hsm\.pinFile: cannot read/);
});

test('HSM PIN: KB_HSM_PIN leaves the environment when read; a symlinked or non-file pin file is refused', () => {
  const c = loadConfig(file('pin2.json', { hsm: { pinFile: join(dir, 'nope') } }), {});
  const env: NodeJS.ProcessEnv = { KB_HSM_PIN: 'from-env', OTHER: 'x' };
  process.env.KB_HSM_PIN = 'from-env';
  assert.equal(readHsmPin(c, env), 'from-env');
  assert.deepEqual(env, { OTHER: 'x' }, 'KB_HSM_PIN removed from the env it was read from');
  assert.equal(process.env.KB_HSM_PIN, undefined, 'and from process.env');
  assert.equal(takeEnvHsmPin({ KB_HSM_PIN: '' }), undefined, 'an empty KB_HSM_PIN is no PIN');

  const real = join(dir, 'real.pin');
  writeFileSync(real, 'S3CRET-PIN\n', { mode: 0o600 });
  const link = join(dir, 'link.pin');
  symlinkSync(real, link);
  const viaLink = loadConfig(file('pinlink.json', { hsm: { pinFile: link } }), {});
  assert.throws(
    () => readHsmPin(viaLink, {}),
    (e: unknown) =>
      e instanceof ConfigError && /symbolic link/.test(e.message) && !e.message.includes('S3CRET'),
    'symlinked pin file',
  );
  const asDir = loadConfig(file('pindir.json', { hsm: { pinFile: dir } }), {});
  chmodSync(dir, 0o700);
  assert.throws(() => readHsmPin(asDir, {}), /not a regular file/, 'a directory as pin file');
});

test('client config: from flags, or from the data dir (config + ready file)', () => {
  const dd = join(dir, 'dd');
  mkdirSync(join(dd, 'run'), { recursive: true });
  writeFileSync(
    join(dd, 'keybroker.json'),
    JSON.stringify({ dataDir: '.', lifecycle: { readyFile: 'run/ready.json' } }),
  );
  const c1 = resolveClientConfig({ dataDir: dd, as: 'service' }, {});
  assert.equal(c1.address, '127.0.0.1:7443', 'no ready file: the configured port');
  writeFileSync(join(dd, 'run/ready.json'), JSON.stringify({ grpc: '127.0.0.1:4242' }));
  const c2 = resolveClientConfig({ dataDir: dd, as: 'admin' }, {});
  assert.equal(c2.address, '127.0.0.1:4242', 'ready file wins (port 0 configs)');
  assert.equal(c2.certFile, join(dd, 'pki/admin.pem'));
  const c3 = resolveClientConfig({ addr: 'h:1', ca: '/ca', cert: '/c', key: '/k', as: 'service' }, {});
  assert.deepEqual(c3, { address: 'h:1', caFile: '/ca', certFile: '/c', keyFile: '/k' });
  assert.throws(
    () => resolveClientConfig({ addr: 'h:1', cert: '/c', as: 'service' }, {}),
    /--cert and --key go together/,
  );
});
