/**
 * `keybroker keys <verb> ...`: the Keys service (asymmetric and post-quantum keys) from the
 * shell, as the data dir's service identity (or --cert/--key). JSON on stdout, bytes as base64;
 * `--out FILE` writes the main bytes raw instead. Binary inputs come from a file or stdin ("-").
 * Batch inputs are JSON lines files, one item a line (fields base64): sign-batch {"message"},
 * verify-batch {"message","signature"}, decapsulate-batch {"ciphertext"}.
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import type { ConnArgs } from './client-call.ts';
import { printJson, runClientCall } from './client-call.ts';
import { readInput, writeOutput } from './io.ts';

type Args = ConnArgs & Record<string, unknown>;

const ALGORITHMS = [
  'ml-kem-768',
  'ml-kem-1024',
  'x-wing',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
  'composite-mldsa65-ecdsa-p256',
  'ed25519',
  'ecdsa-p256',
] as const;
const IMPORTABLE = [
  'ml-kem-768',
  'ml-kem-1024',
  'x-wing',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
  'ed25519',
] as const;
const FORMATS = ['raw', 'spki-der', 'spki-pem', 'jwk'] as const;

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
/** The proto enum name of a CLI algorithm name (ml-dsa-65 -> KEY_ALGORITHM_ML_DSA_65). */
const algorithmEnum = (alg: string) => `KEY_ALGORITHM_${alg.toUpperCase().replace(/-/g, '_')}`;
const bytesOpt = (v: unknown) => Buffer.from(str(v), 'utf8');

/** One JSON lines batch file: each line an object whose named fields are base64. */
export function readBatch(file: string, fields: readonly string[]): Record<string, Buffer>[] {
  const lines = readInput(file).toString('utf8').split('\n');
  const items: Record<string, Buffer>[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new Error(`${file}:${i + 1}: not JSON`);
    }
    const item: Record<string, Buffer> = {};
    for (const f of fields) {
      const v = (o as Record<string, unknown> | null)?.[f];
      if (typeof v !== 'string') throw new Error(`${file}:${i + 1}: "${f}" must be a base64 string`);
      item[f] = Buffer.from(v, 'base64');
    }
    items.push(item);
  });
  return items;
}

const keysCall = (a: Args, method: string, req: object) => runClientCall(a, 'service', 'keys', method, req);

/** Print the answer, or write `field`'s bytes raw when --out was given. */
function emit(a: Args, r: Record<string, unknown>, field: string): void {
  const out = str(a.out);
  if (out !== '') writeOutput(out, r[field] as Buffer);
  else printJson(r);
}

interface Leaf {
  readonly command: string;
  readonly describe: string;
  readonly options?: (y: Argv<Args>) => Argv<Args>;
  run(a: Args): Promise<void>;
}

const customer = (y: Argv<Args>) =>
  y.option('customer', { type: 'string', default: '', describe: 'customer key (default: the tenant key)' });
const version = (y: Argv<Args>, what: string) =>
  y.option('key-version', { type: 'number', describe: `key version (default: ${what})` });
const out = (y: Argv<Args>) =>
  y.option('out', { alias: 'o', type: 'string', describe: 'write the bytes raw here' });
const policy = (y: Argv<Args>) =>
  y
    .option('rotation-period-days', { type: 'number', describe: 'scheduled rotation period (0: off)' })
    .option('usage-limit', { type: 'number', describe: 'rotate after this many operations (0: off)' })
    .option('min-encrypt-version', { type: 'number', describe: 'oldest version new operations use' })
    .option('min-decrypt-version', { type: 'number', describe: 'oldest version that still opens/verifies' });

function policyOf(a: Args): Record<string, number> {
  const p: Record<string, number> = {};
  if (typeof a['rotation-period-days'] === 'number')
    p.rotationPeriodSeconds = Math.round(a['rotation-period-days'] * 86400);
  if (typeof a['usage-limit'] === 'number') p.usageLimit = a['usage-limit'];
  if (typeof a['min-encrypt-version'] === 'number') p.minEncryptVersion = a['min-encrypt-version'];
  if (typeof a['min-decrypt-version'] === 'number') p.minDecryptVersion = a['min-decrypt-version'];
  return p;
}

const KEY = '<key-id>';
const base = (a: Args) => ({ keyId: str(a['key-id']), customer: str(a.customer) });

const LEAVES: readonly Leaf[] = [
  {
    command: `create ${KEY}`,
    describe: 'create a key (first version) of an algorithm',
    options: (y) =>
      policy(customer(y))
        .option('alg', { choices: ALGORITHMS, demandOption: true, describe: 'algorithm' })
        .option('hsm-ecdsa', {
          type: 'boolean',
          default: false,
          describe: 'keep the ECDSA key (or composite half) in the HSM',
        }) as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'CreateKey', {
          ...base(a),
          algorithm: algorithmEnum(str(a.alg)),
          hsmEcdsa: a['hsm-ecdsa'] === true,
          policy: policyOf(a),
        }),
      ),
  },
  {
    command: 'list',
    describe: "list the tenant's (or a customer's) keys",
    options: customer,
    run: async (a) => printJson(await keysCall(a, 'ListKeys', { customer: str(a.customer) })),
  },
  {
    command: `describe ${KEY}`,
    describe: 'show a key and its versions',
    options: customer,
    run: async (a) => printJson(await keysCall(a, 'DescribeKey', base(a))),
  },
  {
    command: `rotate ${KEY}`,
    describe: 'new primary version',
    options: customer,
    run: async (a) => printJson(await keysCall(a, 'RotateKey', base(a))),
  },
  {
    command: `set-version ${KEY}`,
    describe: 'enable or disable one version',
    options: (y) =>
      customer(y)
        .option('key-version', { type: 'number', demandOption: true, describe: 'the version' })
        .option('enabled', { type: 'boolean', demandOption: true }) as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'SetAsymmetricKeyVersionEnabled', {
          ...base(a),
          version: num(a['key-version']),
          enabled: a.enabled === true,
        }),
      ),
  },
  {
    command: `set-policy ${KEY}`,
    describe: 'rotation period, usage limit, minimum versions',
    options: (y) => policy(customer(y)) as Argv<Args>,
    run: async (a) =>
      printJson(await keysCall(a, 'SetAsymmetricKeyPolicy', { ...base(a), policy: policyOf(a) })),
  },
  {
    command: `public-key ${KEY}`,
    describe: 'export a public key (raw, SPKI DER/PEM, JWK)',
    options: (y) =>
      out(version(customer(y), 'primary')).option('format', {
        choices: FORMATS,
        default: 'spki-pem',
        describe: 'encoding',
      }) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'GetPublicKey', {
          ...base(a),
          version: num(a['key-version']),
          format: `PUBLIC_KEY_FORMAT_${str(a.format).toUpperCase().replace(/-/g, '_')}`,
        }),
        'publicKey',
      ),
  },
  {
    command: 'jwks',
    describe: "the tenant's (or a customer's) JWKS for token verification",
    options: customer,
    run: async (a) => {
      const r = await keysCall(a, 'GetJwks', { customer: str(a.customer) });
      printJson(JSON.parse(str(r.jwksJson)) as unknown);
    },
  },
  {
    command: `sign ${KEY} [file]`,
    describe: 'sign a file or stdin',
    options: (y) =>
      out(customer(y)).option('context', {
        type: 'string',
        default: '',
        describe: 'ML-DSA context (UTF-8)',
      }) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'Sign', {
          ...base(a),
          message: readInput(str(a.file)),
          context: bytesOpt(a.context),
        }),
        'signature',
      ),
  },
  {
    command: `verify ${KEY} [file]`,
    describe: 'verify a signature over a file or stdin; exit 1 when it does not verify',
    options: (y) =>
      version(customer(y), 'the enabled versions')
        .option('signature', {
          type: 'string',
          demandOption: true,
          describe: 'file holding the raw signature',
        })
        .option('context', { type: 'string', default: '', describe: 'ML-DSA context (UTF-8)' }) as Argv<Args>,
    run: async (a) => {
      const r = await keysCall(a, 'Verify', {
        ...base(a),
        version: num(a['key-version']),
        message: readInput(str(a.file)),
        signature: readFileSync(str(a.signature)),
        context: bytesOpt(a.context),
      });
      printJson(r);
      if (r.valid !== true) process.exitCode = 1;
    },
  },
  {
    command: `sign-batch ${KEY} <file>`,
    describe: 'sign many messages in one call (JSON lines: {"message": base64})',
    options: (y) => customer(y).option('context', { type: 'string', default: '' }) as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'SignBatch', {
          ...base(a),
          messages: readBatch(str(a.file), ['message']).map((i) => i.message),
          context: bytesOpt(a.context),
        }),
      ),
  },
  {
    command: `verify-batch ${KEY} <file>`,
    describe: 'verify many signatures in one call (JSON lines: {"message","signature"} base64)',
    options: (y) =>
      version(customer(y), 'the enabled versions').option('context', {
        type: 'string',
        default: '',
      }) as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'VerifyBatch', {
          ...base(a),
          version: num(a['key-version']),
          items: readBatch(str(a.file), ['message', 'signature']),
          context: bytesOpt(a.context),
        }),
      ),
  },
  {
    command: `encapsulate ${KEY}`,
    describe: 'a fresh shared secret and its KEM ciphertext to the key',
    options: customer,
    run: async (a) => printJson(await keysCall(a, 'Encapsulate', base(a))),
  },
  {
    command: `encapsulate-batch ${KEY}`,
    describe: 'many encapsulations in one call',
    options: (y) => customer(y).option('count', { type: 'number', demandOption: true }) as Argv<Args>,
    run: async (a) => printJson(await keysCall(a, 'EncapsulateBatch', { ...base(a), count: num(a.count) })),
  },
  {
    command: `decapsulate ${KEY} [file]`,
    describe: 'the shared secret of a KEM ciphertext (file or stdin)',
    options: (y) => out(version(customer(y), 'the enabled versions')) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'Decapsulate', {
          ...base(a),
          version: num(a['key-version']),
          ciphertext: readInput(str(a.file)),
        }),
        'sharedSecret',
      ),
  },
  {
    command: `decapsulate-batch ${KEY} <file>`,
    describe: 'many decapsulations in one call (JSON lines: {"ciphertext": base64})',
    options: (y) => version(customer(y), 'the enabled versions') as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'DecapsulateBatch', {
          ...base(a),
          version: num(a['key-version']),
          ciphertexts: readBatch(str(a.file), ['ciphertext']).map((i) => i.ciphertext),
        }),
      ),
  },
  {
    command: `seal ${KEY} [file]`,
    describe: "seal a file or stdin to the key's public key (HPKE sealed box)",
    options: (y) =>
      out(customer(y))
        .option('info', { type: 'string', default: '', describe: 'HPKE info (UTF-8)' })
        .option('aad', { type: 'string', default: '', describe: 'associated data (UTF-8)' }) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'SealBox', {
          ...base(a),
          plaintext: readInput(str(a.file)),
          info: bytesOpt(a.info),
          aad: bytesOpt(a.aad),
        }),
        'sealed',
      ),
  },
  {
    command: `open ${KEY} [file]`,
    describe: 'open a sealed box from a file or stdin',
    options: (y) =>
      out(version(customer(y), 'the enabled versions'))
        .option('info', { type: 'string', default: '', describe: 'HPKE info (UTF-8)' })
        .option('aad', { type: 'string', default: '', describe: 'associated data (UTF-8)' }) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'OpenBox', {
          ...base(a),
          version: num(a['key-version']),
          sealed: readInput(str(a.file)),
          info: bytesOpt(a.info),
          aad: bytesOpt(a.aad),
        }),
        'plaintext',
      ),
  },
  {
    command: `import-job ${KEY}`,
    describe: 'start a key import: a one-time wrapping public key (--out writes it raw)',
    options: (y) =>
      out(customer(y))
        .option('alg', { choices: IMPORTABLE, demandOption: true, describe: 'algorithm of the imported key' })
        .option('wrapping', {
          choices: ['ml-kem-768', 'rsa-oaep-3072'] as const,
          default: 'ml-kem-768',
          describe: 'ML-KEM-768 + AES-KWP, or RSA-OAEP-3072-SHA256 + AES-KWP',
        })
        .option('ttl-seconds', {
          type: 'number',
          default: 0,
          describe: 'job lifetime (0: 24 h)',
        }) as Argv<Args>,
    run: async (a) =>
      emit(
        a,
        await keysCall(a, 'CreateImportJob', {
          ...base(a),
          algorithm: algorithmEnum(str(a.alg)),
          wrapping:
            a.wrapping === 'rsa-oaep-3072'
              ? 'IMPORT_WRAPPING_RSA_OAEP_3072_SHA256_AES_KWP'
              : 'IMPORT_WRAPPING_ML_KEM_768_AES_KWP',
          ttlSeconds: num(a['ttl-seconds']),
        }),
        'publicKey',
      ),
  },
  {
    command: 'import <job-id> [file]',
    describe: 'import a private key wrapped to an import job (from a file or stdin)',
    options: (y) =>
      customer(y).option('public-key', {
        type: 'string',
        describe: 'file with the raw public key the import must match',
      }) as Argv<Args>,
    run: async (a) =>
      printJson(
        await keysCall(a, 'ImportKey', {
          jobId: str(a['job-id']),
          customer: str(a.customer),
          wrappedKey: readInput(str(a.file)),
          publicKey: str(a['public-key']) === '' ? Buffer.alloc(0) : readFileSync(str(a['public-key'])),
        }),
      ),
  },
];

function leafCommand(l: Leaf): CommandModule<Args, Args> {
  return {
    command: l.command,
    describe: l.describe,
    builder: (y) => (l.options ? l.options(y) : y),
    handler: (a) => l.run(a),
  };
}

export const keysCommand: CommandModule<object, Args> = {
  command: 'keys',
  describe: 'Asymmetric and post-quantum keys: create, sign, verify, encapsulate, seal (service identity)',
  builder: (y) =>
    (y.options(CLIENT_OPTIONS) as unknown as Argv<Args>)
      .command(LEAVES.map(leafCommand))
      .demandCommand(1, 'name a keys action (see --help)') as Argv<Args>,
  handler: () => undefined,
};
