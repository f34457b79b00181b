/**
 * `keybroker secret put|get|list|delete|undelete|destroy`: the Secrets API from the shell, as the
 * data dir's sample service (or --cert/--key). A value is read from a file or stdin, exactly as
 * given (a trailing newline is part of it), never from the command line, where it would land in
 * shell history and the process list. `get` writes the value to stdout (or --out, mode 0600);
 * the other commands print JSON metadata.
 */
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import { runClientCall } from './client-call.ts';
import { readInput, writeOutput } from './io.ts';

interface Args extends Record<string, unknown> {
  'data-dir'?: string;
  addr?: string;
  ca?: string;
  cert?: string;
  key?: string;
  customer: string;
  name: string;
  file?: string;
  out?: string;
  cas?: number;
  'max-versions'?: number;
  'secret-version'?: number;
  versions?: string;
}

const print = (v: unknown): void => {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
};
const call = (a: Args, method: string, req: object) => runClientCall(a, 'service', 'secrets', method, req);
const nameArg = (y: Argv<Args>) =>
  y.positional('name', { type: 'string', demandOption: true, describe: 'secret name, e.g. db/password' });

/** "--versions 1,2,5" as numbers (empty: none). */
function versionList(s: string | undefined): number[] {
  if (s === undefined || s === '') return [];
  return s.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`--versions: "${x}" is not a version number`);
    return n;
  });
}

const put: CommandModule<Args, Args> = {
  command: 'put <name> [file]',
  describe: 'store a new version; the value comes from a file or stdin (never an argument)',
  builder: (y) =>
    nameArg(y)
      .positional('file', { type: 'string', describe: 'file holding the value (default: stdin)' })
      .option('cas', { type: 'number', describe: 'check-and-set: the current version (0: must not exist)' })
      .option('max-versions', { type: 'number', describe: 'versions to keep (1..100)' }) as Argv<Args>,
  handler: async (a) => {
    const value = readInput(a.file);
    const r = await call(a, 'PutSecret', {
      name: a.name,
      customer: a.customer,
      value,
      ...(a.cas !== undefined ? { cas: a.cas } : {}),
      ...(a['max-versions'] !== undefined ? { maxVersions: a['max-versions'] } : {}),
    });
    value.fill(0);
    print({ name: a.name, version: r.version });
  },
};

const get: CommandModule<Args, Args> = {
  command: 'get <name>',
  describe: 'write the value of the current (or --secret-version) version to stdout or --out',
  builder: (y) =>
    nameArg(y)
      .option('secret-version', { type: 'number', describe: 'version to read (default: current)' })
      .option('out', {
        alias: 'o',
        type: 'string',
        describe: 'output file (mode 0600; default: stdout)',
      }) as Argv<Args>,
  handler: async (a) => {
    const r = await call(a, 'GetSecret', {
      name: a.name,
      customer: a.customer,
      version: a['secret-version'] ?? 0,
    });
    writeOutput(a.out, r.value as Uint8Array);
  },
};

const list: CommandModule<Args, Args> = {
  command: 'list',
  describe: 'names and metadata of the secrets (never values)',
  handler: async (a) => print(await call(a, 'ListSecrets', { customer: a.customer })),
};

const versionsOf = (verb: string, method: string, describe: string): CommandModule<Args, Args> => ({
  command: `${verb} <name>`,
  describe,
  builder: (y) =>
    nameArg(y).option('versions', {
      type: 'string',
      describe:
        method === 'DestroySecretVersions'
          ? 'versions, e.g. 1,2 (required)'
          : 'versions, e.g. 1,2 (default: current)',
      ...(method === 'DestroySecretVersions' ? { demandOption: true } : {}),
    }) as Argv<Args>,
  handler: async (a) =>
    print(await call(a, method, { name: a.name, customer: a.customer, versions: versionList(a.versions) })),
});

export const secretCommand: CommandModule<object, Args> = {
  command: 'secret <command>',
  describe: 'versioned secrets of the caller tenant (service identity)',
  builder: (y) =>
    (
      y.options(CLIENT_OPTIONS).option('customer', {
        type: 'string',
        default: '',
        describe: 'customer owning the secret (default: "default")',
      }) as unknown as Argv<Args>
    )
      .command(put)
      .command(get)
      .command(list)
      .command(versionsOf('delete', 'DeleteSecret', 'soft-delete versions (undo with undelete)'))
      .command(versionsOf('undelete', 'UndeleteSecret', 'undo a soft delete'))
      .command(versionsOf('destroy', 'DestroySecretVersions', 'destroy versions for good'))
      .demandCommand(1) as unknown as Argv<Args>,
  handler: () => undefined,
};
