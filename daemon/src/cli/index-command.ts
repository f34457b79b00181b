/**
 * `keybroker index create|rotate|min-version|list` (Admin, as the data dir's admin identity) and
 * `keybroker index compute` (BlindIndexes, as its sample service): keyed blind indexes from the
 * shell. `compute` reads the value from a file or stdin, exactly as given, and prints the tokens
 * as JSON (hex), newest version first. Definitions print as JSON.
 */
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import { runClientCall } from './client-call.ts';
import { readInput } from './io.ts';

interface Args extends Record<string, unknown> {
  'data-dir'?: string;
  addr?: string;
  ca?: string;
  cert?: string;
  key?: string;
  org: string;
  tenant: string;
  index: string;
  normalize?: string;
  'output-bytes'?: number;
  min?: number;
  file?: string;
  customer: string;
  'all-versions': boolean;
}

const print = (v: unknown): void => {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
};
const admin = (a: Args, method: string, req: object) => runClientCall(a, 'admin', 'admin', method, req);

/** "--normalize nfkc,lowercase,trim" as enum names ("" or "none": no steps). */
function steps(s: string | undefined): string[] {
  if (s === undefined || s === '' || s === 'none') return [];
  return s.split(',').map((x) => {
    const v = x.trim().toLowerCase();
    if (!['nfkc', 'lowercase', 'trim'].includes(v))
      throw new Error(`--normalize: "${x}" is not one of nfkc, lowercase, trim`);
    return `BLIND_INDEX_NORMALIZATION_${v.toUpperCase()}`;
  });
}

const where = (y: Argv<Args>, named: boolean) => {
  let out = y
    .positional('org', { type: 'string', demandOption: true, describe: 'org name' })
    .positional('tenant', { type: 'string', demandOption: true, describe: 'tenant name' }) as Argv<Args>;
  if (named)
    out = out.positional('index', {
      type: 'string',
      demandOption: true,
      describe: 'index name',
    }) as Argv<Args>;
  return out;
};
const params = (y: Argv<Args>) =>
  y
    .option('normalize', { type: 'string', describe: 'steps: nfkc,lowercase,trim (or none)' })
    .option('output-bytes', { type: 'number', choices: [16, 32], describe: 'token length' }) as Argv<Args>;

const create: CommandModule<Args, Args> = {
  command: 'create <org> <tenant> <index>',
  describe: 'define a blind index (admin)',
  builder: (y) => params(where(y, true)).demandOption('output-bytes') as Argv<Args>,
  handler: async (a) =>
    print(
      await admin(a, 'CreateBlindIndex', {
        org: a.org,
        tenant: a.tenant,
        index: a.index,
        normalization: steps(a.normalize),
        outputBytes: a['output-bytes'],
      }),
    ),
};

const rotate: CommandModule<Args, Args> = {
  command: 'rotate <org> <tenant> <index>',
  describe: 'new primary version (admin); --normalize / --output-bytes change it',
  builder: (y) => params(where(y, true)),
  handler: async (a) =>
    print(
      await admin(a, 'RotateBlindIndex', {
        org: a.org,
        tenant: a.tenant,
        index: a.index,
        changeNormalization: a.normalize !== undefined,
        normalization: steps(a.normalize),
        outputBytes: a['output-bytes'] ?? 0,
      }),
    ),
};

const minVersion: CommandModule<Args, Args> = {
  command: 'min-version <org> <tenant> <index> <min>',
  describe: 'retire the versions below <min> from queries (admin)',
  builder: (y) =>
    where(y, true).positional('min', {
      type: 'number',
      demandOption: true,
      describe: 'lowest searchable version',
    }) as Argv<Args>,
  handler: async (a) =>
    print(
      await admin(a, 'SetBlindIndexMinVersion', {
        org: a.org,
        tenant: a.tenant,
        index: a.index,
        minVersion: a.min,
      }),
    ),
};

const list: CommandModule<Args, Args> = {
  command: 'list <org> <tenant>',
  describe: "a tenant's blind indexes with their versions (admin)",
  builder: (y) => where(y, false),
  handler: async (a) => print(await admin(a, 'ListBlindIndexes', { org: a.org, tenant: a.tenant })),
};

const compute: CommandModule<Args, Args> = {
  command: 'compute <index> [file]',
  describe: 'tokens of a value from a file or stdin (service identity)',
  builder: (y) =>
    y
      .positional('index', { type: 'string', demandOption: true })
      .positional('file', { type: 'string', describe: 'file holding the value (default: stdin)' })
      .option('customer', { type: 'string', default: '', describe: 'customer (default: "default")' })
      .option('all-versions', {
        type: 'boolean',
        default: false,
        describe: 'tokens of every searchable version (for queries), not only the primary',
      }) as Argv<Args>,
  handler: async (a) => {
    const r = await runClientCall(a, 'service', 'blindIndexes', 'ComputeBlindIndex', {
      index: a.index,
      value: readInput(a.file),
      customer: a.customer,
      allSearchableVersions: a['all-versions'],
    });
    const tokens = (r.tokens as { version: number; token: Uint8Array }[]).map((t) => ({
      version: t.version,
      token: Buffer.from(t.token).toString('hex'),
    }));
    print({ index: a.index, tokens });
  },
};

const computeBatch: CommandModule<Args, Args> = {
  command: 'compute-batch <index> <file>',
  describe: 'tokens of many values in one call: a file of one value a line, UTF-8 (service identity)',
  builder: (y) =>
    y
      .positional('index', { type: 'string', demandOption: true })
      .positional('file', { type: 'string', describe: 'one value a line ("-": stdin)' })
      .option('customer', { type: 'string', default: '', describe: 'customer (default: "default")' })
      .option('all-versions', {
        type: 'boolean',
        default: false,
        describe: 'tokens of every searchable version (for queries), not only the primary',
      }) as Argv<Args>,
  handler: async (a) => {
    const values = readInput(a.file)
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => Buffer.from(l, 'utf8'));
    const r = await runClientCall(a, 'service', 'blindIndexes', 'ComputeBlindIndexBatch', {
      index: a.index,
      values,
      customer: a.customer,
      allSearchableVersions: a['all-versions'],
    });
    const hex = (t: { version: number; token: Uint8Array }) => ({
      version: t.version,
      token: Buffer.from(t.token).toString('hex'),
    });
    print({
      index: a.index,
      results: (
        r.results as { result?: { tokens: { version: number; token: Uint8Array }[] }; error?: unknown }[]
      ).map((x) =>
        x.result !== undefined && x.result !== null
          ? { tokens: x.result.tokens.map(hex) }
          : { error: x.error },
      ),
    });
  },
};

export const indexCommand: CommandModule<object, Args> = {
  command: 'index <command>',
  describe: 'keyed blind indexes: define (admin) and compute tokens (service)',
  builder: (y) =>
    (y.options(CLIENT_OPTIONS) as unknown as Argv<Args>)
      .command(create)
      .command(rotate)
      .command(minVersion)
      .command(list)
      .command(compute)
      .command(computeBatch)
      .demandCommand(1) as unknown as Argv<Args>,
  handler: () => undefined,
};
