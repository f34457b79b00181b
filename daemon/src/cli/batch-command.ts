/**
 * `keybroker encrypt-batch <file>` / `decrypt-batch <file>`: many items in one call (service
 * identity). Input: JSON lines, fields base64 — {"plaintext", "aad"?, "customer"?} or
 * {"ciphertext", "aad"?}. Output: JSON with one result or error per item, in order.
 */
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import type { ConnArgs } from './client-call.ts';
import { printJson, runClientCall } from './client-call.ts';
import { readInput } from './io.ts';

type Args = ConnArgs & { file: string };

/** JSON lines -> request items; `bytes` fields are base64, `strings` are kept as strings. */
function readItems(
  file: string,
  need: string,
  bytes: readonly string[],
  strings: readonly string[],
): object[] {
  const items: object[] = [];
  readInput(file)
    .toString('utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new Error(`${file}:${i + 1}: not JSON`);
      }
      if (typeof o[need] !== 'string') throw new Error(`${file}:${i + 1}: "${need}" must be a base64 string`);
      const item: Record<string, unknown> = {};
      for (const f of bytes) if (typeof o[f] === 'string') item[f] = Buffer.from(o[f], 'base64');
      for (const f of strings) if (typeof o[f] === 'string') item[f] = o[f];
      items.push(item);
    });
  return items;
}

function batch(
  verb: string,
  method: string,
  need: string,
  strings: readonly string[],
): CommandModule<object, Args> {
  return {
    command: `${verb} <file>`,
    describe: `${method}: JSON lines in, one result per line out (service identity)`,
    builder: (y) =>
      y
        .options(CLIENT_OPTIONS)
        .positional('file', { type: 'string', describe: 'JSON lines ("-": stdin)' }) as Argv<Args>,
    handler: async (a) =>
      printJson(
        await runClientCall(a, 'service', 'crypto', method, {
          items: readItems(a.file, need, [need, 'aad'], strings),
        }),
      ),
  };
}

export const encryptBatchCommand = batch('encrypt-batch', 'EncryptBatch', 'plaintext', ['customer']);
export const decryptBatchCommand = batch('decrypt-batch', 'DecryptBatch', 'ciphertext', []);
