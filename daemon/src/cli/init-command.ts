/**
 * `keybroker init --data-dir D`: everything a dev or test daemon needs, under D:
 *   pki/       private CA, server cert (127.0.0.1/localhost), admin and sample-service client certs
 *   secrets/   HSM user and SO PINs (0600)
 *   keybroker.json  the config `keybroker serve --config D/keybroker.json` runs with
 *   receipt-key.pem, broker-keys.json  the broker's public keys with fingerprints, to pin
 * and the SoftHSM2 config and token OUTSIDE D (default: the sibling D-token, or --token-dir):
 * the token's files are the root keys, so a backup of D must never carry them (review H3).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { orgId, tenantId } from '../ids.ts';
import type { PkiAlgorithm } from '../tls/dev-pki.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');

interface Args {
  'data-dir': string;
  org: string;
  tenant: string;
  admin: string;
  service: string;
  'pki-alg': PkiAlgorithm;
  port: number;
  'metrics-port': number;
  'token-label': string;
  force: boolean;
  /** SoftHSM2 token directory (default: the data dir's sibling "<data-dir>-token"). */
  'token-dir'?: string | undefined;
  /** Open the new token once to create the receipt and audit keys and write them out (CLI default). */
  'broker-keys'?: boolean;
}

export interface InitResult {
  readonly dataDir: string;
  readonly configFile: string;
  readonly tokenDir: string;
}

/**
 * `keybroker broker-keys write` in a child process (the PKCS#11 module reads SOFTHSM2_CONF once per
 * process): creates the receipt and audit keys in the new token and writes receipt-key.pem and
 * broker-keys.json into the data dir, the out-of-band copy receipts are verified against.
 */
function writeBrokerKeys(configFile: string): void {
  execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'daemon/src/cli/main.ts'), 'broker-keys', 'write', '--config', configFile],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
}

function writeSecret(path: string, data: string): void {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600); // writeFileSync keeps the mode of an existing file
}

/** Create the data dir; refuses to overwrite an existing config unless `force`. */
export async function initDataDir(a: Args): Promise<InitResult> {
  const dir = resolve(a['data-dir']);
  const configFile = join(dir, 'keybroker.json');
  if (existsSync(configFile) && !a.force) throw new Error(`${configFile} exists (use --force to start over)`);
  const org = orgId(a.org);
  const tenant = tenantId(a.tenant);
  if (tenant === 'admin') throw new Error('--tenant: "admin" is reserved');
  // Outside the data dir, so a backup of the data dir never carries the root keys (H3).
  const tokenDir = resolve(a['token-dir'] ?? `${dir}-token`);
  if (
    (await import('../hsm/token-layout.ts')).isInside(tokenDir, dir) ||
    (await import('../hsm/token-layout.ts')).isInside(dir, tokenDir)
  )
    throw new Error(`--token-dir ${tokenDir} must lie outside the data dir ${dir} (and not contain it)`);
  // --force starts over: the old key store would not match a new token.
  if (a.force && existsSync(configFile)) {
    rmSync(dir, { recursive: true, force: true });
    // Only a token dir create-token.sh made (it holds its softhsm2.conf).
    if (existsSync(join(tokenDir, 'softhsm2.conf'))) rmSync(tokenDir, { recursive: true, force: true });
  }
  for (const d of [dir, join(dir, 'pki'), join(dir, 'secrets')]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    chmodSync(d, 0o700);
  }

  const userPin = randomBytes(16).toString('hex');
  const soPin = randomBytes(16).toString('hex');
  writeSecret(join(dir, 'secrets/hsm-user.pin'), userPin + '\n');
  writeSecret(join(dir, 'secrets/hsm-so.pin'), soPin + '\n');
  // PINs go through the environment, not argv, so they do not show in `ps`.
  execFileSync(join(REPO_ROOT, 'softhsm-fixtures/create-token.sh'), [tokenDir, a['token-label']], {
    env: { ...process.env, KB_SO_PIN: soPin, KB_USER_PIN: userPin },
    stdio: ['ignore', 'ignore', 'inherit'],
  });

  const { createDevCa } = await import('../tls/dev-pki.ts');
  const ca = await createDevCa(`keybroker dev CA (${org})`, a['pki-alg']);
  const server = await ca.issue({
    commonName: 'keybroker',
    dnsNames: ['localhost'],
    ips: ['127.0.0.1', '::1'],
    usage: 'server',
  });
  const admin = await ca.issue({
    commonName: a.admin,
    uris: [`spiffe://${org}/admin/${a.admin}`],
    usage: 'client',
  });
  const service = await ca.issue({
    commonName: a.service,
    uris: [`spiffe://${org}/${tenant}/${a.service}`],
    usage: 'client',
  });
  const pki = join(dir, 'pki');
  writeFileSync(join(pki, 'ca.pem'), ca.certPem);
  writeSecret(join(pki, 'ca-key.pem'), ca.keyPem);
  for (const [name, pair] of [
    ['server', server],
    ['admin', admin],
    ['service', service],
  ] as const) {
    writeFileSync(join(pki, `${name}.pem`), pair.certPem);
    writeSecret(join(pki, `${name}-key.pem`), pair.keyPem);
  }

  const config = {
    dataDir: '.',
    listen: { host: '127.0.0.1', port: a.port },
    tls: { caFile: 'pki/ca.pem', certFile: 'pki/server.pem', keyFile: 'pki/server-key.pem' },
    hsm: {
      profile: 'softhsm2',
      tokenLabel: a['token-label'],
      pinFile: 'secrets/hsm-user.pin',
      // Relative to the data dir when it is the default sibling, so both can move together.
      softhsmConf:
        a['token-dir'] === undefined
          ? `../${basename(dir)}-token/softhsm2.conf`
          : join(tokenDir, 'softhsm2.conf'),
    },
    metrics: { enabled: true, host: '127.0.0.1', port: a['metrics-port'] },
    lifecycle: { readyFile: 'run/ready.json' },
    bootstrap: { org, tenants: [tenant] },
  };
  writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  if (a['broker-keys'] === true) writeBrokerKeys(configFile);
  return { dataDir: dir, configFile, tokenDir };
}

export const initCommand: CommandModule<object, Args> = {
  command: 'init',
  describe: 'Create a dev/test data dir: private CA and certs, SoftHSM2 token, PINs, config',
  builder: (y) =>
    y
      .option('data-dir', { type: 'string', default: '.data', describe: 'directory to create' })
      .option('org', { type: 'string', default: 'acme', describe: 'org created on first serve' })
      .option('tenant', {
        type: 'string',
        default: 'sample',
        describe: 'sample tenant created on first serve',
      })
      .option('admin', {
        type: 'string',
        default: 'admin1',
        describe: 'admin identity name (spiffe://<org>/admin/<name>)',
      })
      .option('service', {
        type: 'string',
        default: 'app',
        describe: 'sample service (spiffe://<org>/<tenant>/<service>)',
      })
      .option('pki-alg', {
        choices: ['ecdsa-p256', 'mldsa65'] as const,
        default: 'ecdsa-p256' as const,
        describe: 'certificate signature algorithm (ML-DSA-65 needs OpenSSL >= 3.5 on every peer)',
      })
      .option('port', { type: 'number', default: 7443, describe: 'gRPC port (0: any free port)' })
      .option('metrics-port', { type: 'number', default: 9464, describe: '/metrics port (0: any free port)' })
      .option('token-label', { type: 'string', default: 'keybroker', describe: 'SoftHSM2 token label' })
      .option('token-dir', {
        type: 'string',
        describe:
          'SoftHSM2 token directory, outside the data dir (default: <data-dir>-token); never back it up',
      })
      .option('broker-keys', {
        type: 'boolean',
        default: true,
        describe: 'create the receipt and audit keys now and write receipt-key.pem / broker-keys.json',
      })
      .option('force', {
        type: 'boolean',
        default: false,
        describe: 'wipe and recreate an existing data dir',
      }),
  handler: async (argv) => {
    const r = await initDataDir(argv);
    process.stdout.write(
      `keybroker: initialised ${r.dataDir}\n` +
        `  token:  ${r.tokenDir} (the root keys: never back it up, never put it in the data dir)\n` +
        `  run:    keybroker serve --config ${r.configFile}\n` +
        `  admin:  keybroker admin org list --data-dir ${r.dataDir}\n` +
        `  client: echo hello | keybroker encrypt --data-dir ${r.dataDir} > ct.bin\n`,
    );
  },
};
