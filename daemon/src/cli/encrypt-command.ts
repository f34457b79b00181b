/**
 * Client commands over mTLS as the data dir's sample service (or --cert/--key):
 *   keybroker encrypt [file]   ciphertext to stdout (or --out)
 *   keybroker decrypt [file]   plaintext to stdout (or --out)
 * Input is a file or stdin. --stream uses EncryptStream/DecryptStream for any size; its output
 * is framed as "KBS1" ‖ u32 header length ‖ header ‖ (u32 chunk length ‖ chunk)*.
 */
import { once } from 'node:events';
import type { Argv, CommandModule } from 'yargs';
import type { ServiceClient } from '../api/api-client.ts';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import { failCall, runClientCall, withClient } from './client-call.ts';
import { readInput, writeOutput } from './io.ts';

export { readInput, writeOutput };

interface Args {
  'data-dir'?: string;
  addr?: string;
  ca?: string;
  cert?: string;
  key?: string;
  file?: string;
  out?: string;
  aad: string;
  customer: string;
  stream: boolean;
}

const MAGIC = Buffer.from('KBS1');
const PIECE = 256 * 1024;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Run `fn` on the Crypto service; a failed stream prints the CLI error format and exits 1. */
function withCrypto<T>(a: Args, method: string, fn: (c: ServiceClient) => Promise<T>): Promise<T> {
  return withClient(a, 'service', (c) =>
    fn(c.service('crypto')).catch((err: unknown) => failCall(method, err, c.address)),
  );
}

/** Run a bidi stream: write `msgs`, collect every response message. */
export async function runStream(s: ReturnType<ServiceClient['stream']>, msgs: object[]): Promise<object[]> {
  const got: object[] = [];
  s.on('data', (m: object) => got.push(m));
  const done = new Promise<void>((resolve, reject) => {
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  for (const m of msgs) if (!s.write(m)) await once(s, 'drain');
  s.end();
  await done;
  return got;
}

async function streamEncrypt(a: Args, input: Buffer): Promise<Buffer> {
  return withCrypto(a, 'EncryptStream', async (c) => {
    const msgs: object[] = [{ init: { customer: a.customer, aad: Buffer.from(a.aad) } }];
    for (let i = 0; i < input.length; i += PIECE) msgs.push({ plaintext: input.subarray(i, i + PIECE) });
    const out = (await runStream(c.stream('EncryptStream'), msgs)) as { header?: Buffer; chunk?: Buffer }[];
    const parts: Buffer[] = [MAGIC];
    for (const m of out) {
      const b = m.header ?? m.chunk ?? Buffer.alloc(0);
      parts.push(u32(b.length), b);
    }
    return Buffer.concat(parts);
  });
}

async function streamDecrypt(a: Args, input: Buffer): Promise<Buffer> {
  if (input.length < 8 || !input.subarray(0, 4).equals(MAGIC))
    throw new Error('input is not a keybroker stream (KBS1)');
  const frames: Buffer[] = [];
  for (let off = 4; off < input.length;) {
    const n = input.readUInt32BE(off);
    frames.push(input.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  const [header, ...chunks] = frames;
  return withCrypto(a, 'DecryptStream', async (c) => {
    const msgs = [{ init: { header, aad: Buffer.from(a.aad) } }, ...chunks.map((chunk) => ({ chunk }))];
    const out = (await runStream(c.stream('DecryptStream'), msgs)) as { plaintext: Buffer }[];
    return Buffer.concat(out.map((m) => m.plaintext));
  });
}

function builder(y: Argv<object>): Argv<Args> {
  return y
    .options(CLIENT_OPTIONS)
    .positional('file', { type: 'string', describe: 'input file (default: stdin)' })
    .option('out', { alias: 'o', type: 'string', describe: 'output file (default: stdout)' })
    .option('aad', {
      type: 'string',
      default: '',
      describe: 'encryption context (UTF-8), bound to the ciphertext',
    })
    .option('customer', { type: 'string', default: '', describe: 'customer key to use (default: "default")' })
    .option('stream', {
      type: 'boolean',
      default: false,
      describe: 'use the streaming RPC (any size)',
    }) as Argv<Args>;
}

const fail = (err: unknown) => {
  process.stderr.write(`keybroker: ${(err as Error).message}\n`);
  process.exit(1);
};

export const encryptCommand: CommandModule<object, Args> = {
  command: 'encrypt [file]',
  describe: 'Encrypt a file or stdin for the caller tenant (service identity)',
  builder,
  handler: async (a) => {
    const input = readInput(a.file);
    if (a.stream) return writeOutput(a.out, await streamEncrypt(a, input).catch(fail));
    const r = await runClientCall(a, 'service', 'crypto', 'Encrypt', {
      customer: a.customer,
      plaintext: input,
      aad: Buffer.from(a.aad),
    });
    writeOutput(a.out, r.ciphertext as Buffer);
  },
};

export const decryptCommand: CommandModule<object, Args> = {
  command: 'decrypt [file]',
  describe: 'Decrypt a ciphertext from a file or stdin (service identity)',
  builder,
  handler: async (a) => {
    const input = readInput(a.file);
    if (a.stream) return writeOutput(a.out, await streamDecrypt(a, input).catch(fail));
    const r = await runClientCall(a, 'service', 'crypto', 'Decrypt', {
      ciphertext: input,
      aad: Buffer.from(a.aad),
    });
    writeOutput(a.out, r.plaintext as Buffer);
  },
};
