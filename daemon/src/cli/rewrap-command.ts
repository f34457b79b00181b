/**
 * `keybroker rewrap [file]`: move a ciphertext or wrapped data key to the primary customer key
 * version without the plaintext leaving the broker (Crypto.Rewrap, service identity).
 */
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import type { ConnArgs } from './client-call.ts';
import { runClientCall } from './client-call.ts';
import { readInput, writeOutput } from './io.ts';

type Args = ConnArgs & { file?: string; out?: string; aad: string };

export const rewrapCommand: CommandModule<object, Args> = {
  command: 'rewrap [file]',
  describe: 'Move a ciphertext (file or stdin) to the newest customer key version, plaintext unseen',
  builder: (y) =>
    y
      .options(CLIENT_OPTIONS)
      .positional('file', { type: 'string', describe: 'ciphertext file (default: stdin)' })
      .option('out', { alias: 'o', type: 'string', describe: 'output file (default: stdout)' })
      .option('aad', {
        type: 'string',
        default: '',
        describe: 'its encryption context (UTF-8)',
      }) as Argv<Args>,
  handler: async (a) => {
    const r = await runClientCall(a, 'service', 'crypto', 'Rewrap', {
      ciphertext: readInput(a.file),
      aad: Buffer.from(a.aad),
    });
    writeOutput(a.out, r.ciphertext as Buffer);
  },
};
