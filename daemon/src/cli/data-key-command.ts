/**
 * `keybroker data-key generate|decrypt`: envelope-encryption data keys for the caller tenant.
 * `generate` prints JSON {plaintextKey, wrappedKey (base64), keyVersion}; `decrypt` takes the
 * wrapped key (base64 argument, file or stdin) and prints the plaintext key as base64.
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
  aad: string;
  customer: string;
  length: number;
  wrapped?: string;
  file?: string;
}

const generate: CommandModule<Args, Args> = {
  command: 'generate',
  describe: 'generate a data key: prints {plaintextKey, wrappedKey, keyVersion} (base64)',
  builder: (y) =>
    y.option('length', { type: 'number', default: 32, choices: [16, 32] }) as unknown as Argv<Args>,
  handler: async (a) => {
    const r = await runClientCall(a, 'service', 'crypto', 'GenerateDataKey', {
      customer: a.customer,
      aad: Buffer.from(a.aad),
      length: a.length,
    });
    const b64 = (v: unknown) => Buffer.from(v as Uint8Array).toString('base64');
    process.stdout.write(
      JSON.stringify({
        plaintextKey: b64(r.plaintextKey),
        wrappedKey: b64(r.wrappedKey),
        keyVersion: r.keyVersion,
      }) + '\n',
    );
  },
};

const decrypt: CommandModule<Args, Args> = {
  command: 'decrypt [file]',
  describe: 'unwrap a data key (base64 via --wrapped, or raw bytes from a file/stdin); prints it as base64',
  builder: (y) =>
    y
      .positional('file', { type: 'string' })
      .option('wrapped', { type: 'string', describe: 'wrapped key, base64' }) as unknown as Argv<Args>,
  handler: async (a) => {
    const wrappedKey = a.wrapped !== undefined ? Buffer.from(a.wrapped, 'base64') : readInput(a.file);
    const r = await runClientCall(a, 'service', 'crypto', 'DecryptDataKey', {
      wrappedKey,
      aad: Buffer.from(a.aad),
    });
    process.stdout.write(Buffer.from(r.plaintextKey as Uint8Array).toString('base64') + '\n');
  },
};

export const dataKeyCommand: CommandModule<object, Args> = {
  command: 'data-key',
  describe: 'Generate or unwrap envelope-encryption data keys (service identity)',
  builder: (y) =>
    (
      y
        .options(CLIENT_OPTIONS)
        .option('aad', { type: 'string', default: '', describe: 'encryption context (UTF-8)' })
        .option('customer', {
          type: 'string',
          default: '',
          describe: 'customer key (default: "default")',
        }) as unknown as Argv<Args>
    )
      .command([generate, decrypt] as unknown as CommandModule<Args, Args>[])
      .demandCommand(1, 'name an action: generate or decrypt') as Argv<Args>,
  handler: () => undefined,
};
