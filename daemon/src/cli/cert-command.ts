/**
 * `keybroker cert issue|renew|revoke|list|ca`: the broker as CA for its callers
 * (keybroker.v1.Certificates). Keys are generated here and written 0600; only CSRs travel.
 * `renew` runs as the identity it renews (its current certificate), so a service can renew
 * itself from a systemd timer: with --if-expires-within it does nothing while the certificate
 * has longer to live.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import type { CsrAlgorithm } from '../tls/csr-builder.ts';
import { runClientCall } from './client-call.ts';

type Args = Parameters<typeof runClientCall>[0] & Record<string, unknown>;

const print = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');
const CA_ALGS: Readonly<Record<string, string>> = {
  'ecdsa-p256': 'CA_ALGORITHM_ECDSA_P256',
  mldsa65: 'CA_ALGORITHM_ML_DSA_65',
};

/** Replace a file atomically (key files 0600). */
function writeAtomically(path: string, text: string, mode: number): void {
  writeFileSync(`${path}.tmp`, text, { mode });
  renameSync(`${path}.tmp`, path);
}

const keyOptions = (y: Argv<Args>) =>
  y
    .option('algorithm', {
      choices: ['ecdsa-p256', 'mldsa65'],
      default: 'ecdsa-p256',
      describe: 'key algorithm',
    })
    .option('lifetime-hours', {
      type: 'number',
      describe: 'certificate lifetime (default: the daemon ca.defaultLifetimeMs)',
    });

/**
 * Ask for a certificate and write the chain (leaf + CA); with --csr-file the key was made
 * earlier (`cert csr`), else make key and CSR now and write the key too.
 */
async function issueTo(a: Args, as: 'admin' | 'service', identity: string, certOut: string, keyOut: string) {
  const csrFile = typeof a['csr-file'] === 'string' ? a['csr-file'] : undefined;
  const made =
    csrFile === undefined
      ? await (
          await import('../tls/csr-builder.ts')
        ).makeKeyAndCsr(a.algorithm as CsrAlgorithm, identity === '' ? undefined : identity)
      : { keyPem: undefined, csrPem: readFileSync(csrFile, 'utf8') };
  const hours = typeof a['lifetime-hours'] === 'number' ? a['lifetime-hours'] : 0;
  const r = await runClientCall(a, as, 'certificates', 'IssueCertificate', {
    csrPem: made.csrPem,
    identity,
    lifetimeSeconds: Math.round(hours * 3600),
    approvalId: typeof a['approval-id'] === 'string' ? a['approval-id'] : '',
  });
  if (made.keyPem !== undefined) writeAtomically(keyOut, made.keyPem, 0o600);
  writeAtomically(certOut, String(r.certificatePem) + String(r.caCertificatePem), 0o644);
  print({ serial: r.serial, notAfter: new Date(Number(r.notAfterUnixMs)).toISOString(), cert: certOut });
}

const issue: CommandModule<Args, Args> = {
  command: 'issue <identity>',
  describe: 'issue a certificate for spiffe://<org>/<tenant>/<service> (as the org admin)',
  builder: (y) =>
    keyOptions(y)
      .positional('identity', { type: 'string', describe: 'spiffe:// URI to certify' })
      .option('cert-out', { type: 'string', demandOption: true, describe: 'where to write the chain (PEM)' })
      .option('key-out', {
        type: 'string',
        describe: 'where to write the new key (0600; not with --csr-file)',
      })
      .option('csr-file', {
        type: 'string',
        describe: 'certify this CSR (from `cert csr`) instead of a new key',
      })
      .option('approval-id', {
        type: 'string',
        describe: 'another admin identity: an approved issue-admin-certificate approval for the CSR',
      }) as Argv<Args>,
  handler: async (a) => {
    if ((typeof a['csr-file'] === 'string') === (typeof a['key-out'] === 'string'))
      throw new Error('give either --key-out (a new key) or --csr-file');
    await issueTo(a, 'admin', String(a.identity), String(a['cert-out']), String(a['key-out']));
  },
};

const csr: CommandModule<Args, Args> = {
  command: 'csr <identity>',
  describe: 'make a key and a CSR (for `admin approval request issue-admin-certificate --policy-file`)',
  builder: (y) =>
    keyOptions(y)
      .positional('identity', { type: 'string' })
      .option('csr-out', { type: 'string', demandOption: true })
      .option('key-out', {
        type: 'string',
        demandOption: true,
        describe: 'the new key (0600)',
      }) as Argv<Args>,
  handler: async (a) => {
    const { keyPem, csrPem } = await (
      await import('../tls/csr-builder.ts')
    ).makeKeyAndCsr(a.algorithm as CsrAlgorithm, String(a.identity));
    writeAtomically(String(a['key-out']), keyPem, 0o600);
    writeAtomically(String(a['csr-out']), csrPem, 0o644);
    print({ csr: a['csr-out'], key: a['key-out'] });
  },
};

const renew: CommandModule<Args, Args> = {
  command: 'renew',
  describe: 'renew the identity of --cert/--key with a new key, in place (as that identity)',
  builder: (y) =>
    keyOptions(y).option('if-expires-within-hours', {
      type: 'number',
      describe: 'do nothing unless the certificate expires within this many hours (for timers)',
    }) as Argv<Args>,
  handler: async (a) => {
    if (typeof a.cert !== 'string' || typeof a.key !== 'string')
      throw new Error('renew needs --cert and --key (the identity to renew)');
    const within = a['if-expires-within-hours'];
    const notAfter = new X509Certificate(readFileSync(a.cert)).validToDate.getTime();
    if (typeof within === 'number' && notAfter - Date.now() > within * 3_600_000) {
      print({ renewed: false, notAfter: new Date(notAfter).toISOString() });
      return;
    }
    await issueTo(a, 'service', '', a.cert, a.key);
  },
};

const revoke: CommandModule<Args, Args> = {
  command: 'revoke <org> <serial>',
  describe: 'revoke an issued certificate (refused from the next call on, open connections included)',
  builder: (y) =>
    y.positional('org', { type: 'string' }).positional('serial', { type: 'string' }) as Argv<Args>,
  handler: async (a) => {
    const r = await runClientCall(a, 'admin', 'certificates', 'RevokeCertificate', {
      org: a.org,
      serial: a.serial,
    });
    print(r);
  },
};

const list: CommandModule<Args, Args> = {
  command: 'list <org>',
  describe: 'issued certificates of an org, newest first',
  builder: (y) =>
    y
      .positional('org', { type: 'string' })
      .option('identity', { type: 'string', describe: 'only this URI' }) as Argv<Args>,
  handler: async (a) => {
    const identity = typeof a.identity === 'string' ? a.identity : '';
    print(await runClientCall(a, 'admin', 'certificates', 'ListCertificates', { org: a.org, identity }));
  },
};

const ca: CommandModule<Args, Args> = {
  command: 'ca <action> [org]',
  describe: 'the org CA: "create" a new generation (rotation), "get" the certificates and CRLs',
  builder: (y) =>
    y
      .positional('action', { choices: ['create', 'get'] })
      .positional('org', { type: 'string' })
      .option('algorithm', { choices: ['ecdsa-p256', 'mldsa65'], default: 'ecdsa-p256' })
      .option('bundle-out', { type: 'string', describe: 'get: write every CA certificate here (PEM bundle)' })
      .option('crl-out', { type: 'string', describe: 'get: write the CRLs here (PEM)' }) as Argv<Args>,
  handler: async (a) => {
    if (a.action === 'create') {
      const r = await runClientCall(a, 'admin', 'certificates', 'CreateCa', {
        org: a.org,
        algorithm: CA_ALGS[String(a.algorithm)],
      });
      print(r);
      return;
    }
    const r = await runClientCall(a, 'admin', 'certificates', 'GetCa', { org: a.org ?? '' });
    const cas = r.cas as { certificatePem: string; generation: number; algorithm: string }[];
    if (typeof a['bundle-out'] === 'string')
      writeAtomically(a['bundle-out'], cas.map((c) => c.certificatePem).join(''), 0o644);
    if (typeof a['crl-out'] === 'string')
      writeAtomically(a['crl-out'], (r.crlPems as string[]).join(''), 0o644);
    print({
      cas: cas.map((c) => ({ generation: c.generation, algorithm: c.algorithm })),
      crls: (r.crlPems as string[]).length,
    });
  },
};

export const certCommand: CommandModule<object, Args> = {
  command: 'cert',
  describe: 'Client certificates from the broker CA: issue, csr, renew, revoke, list, ca',
  builder: (y) =>
    (y.options(CLIENT_OPTIONS) as unknown as Argv<Args>)
      .command([issue, csr, renew, revoke, list, ca])
      .demandCommand(1, 'name a cert action: issue, renew, revoke, list, ca'),
  handler: () => undefined,
};
