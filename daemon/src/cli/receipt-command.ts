/**
 * `keybroker receipt verify (--key FILE | --fingerprint HEX) RECEIPT`: check a shred receipt
 * offline against a PINNED broker receipt key (receipt-key.pem from `keybroker init`,
 * `keybroker admin keys`, or the fingerprint in the daemon's start log). The key inside the
 * receipt is never trusted by itself. RECEIPT is a JSON file: the receipt, or the whole
 * DestroyTenant/DestroyCustomer answer (`{"receipt": {...}}`). Exit 0 valid, 1 not.
 */
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import type { ShredReceipt } from '../keys/key-broker-api.ts';
import type { TrustedReceiptKey } from '../keys/receipt-verifier.ts';

interface Args {
  receipt: string;
  key: string | undefined;
  fingerprint: string | undefined;
}

function readReceipt(path: string): ShredReceipt {
  const v = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const r = (typeof v.receipt === 'object' && v.receipt !== null ? v.receipt : v) as Record<string, unknown>;
  for (const f of ['body', 'signatureAlgorithm', 'signature', 'publicKeyPem'])
    if (typeof r[f] !== 'string') throw new Error(`${path}: not a shred receipt (no "${f}")`);
  return r as unknown as ShredReceipt;
}

const verifyCommand: CommandModule<object, Args> = {
  command: 'verify <receipt>',
  describe: 'verify a shred receipt against the pinned receipt key',
  builder: (y) =>
    y
      .positional('receipt', { type: 'string', demandOption: true, describe: 'receipt JSON file' })
      .option('key', { type: 'string', describe: 'pinned receipt public key (PEM SPKI file)' })
      .option('fingerprint', { type: 'string', describe: 'pinned SHA-256 of the receipt key SPKI (hex)' })
      .check((a) => {
        if ((a.key === undefined) === (a.fingerprint === undefined))
          throw new Error('give exactly one of --key or --fingerprint (the pinned receipt key)');
        return true;
      }),
  handler: async (a) => {
    const trusted: TrustedReceiptKey =
      a.key !== undefined
        ? { publicKeyPem: readFileSync(a.key, 'utf8') }
        : { sha256: a.fingerprint as string };
    const c = (await import('../keys/receipt-verifier.ts')).checkShredReceipt(
      readReceipt(a.receipt),
      trusted,
    );
    if (c.ok) {
      const body = JSON.parse(readReceipt(a.receipt).body) as Record<string, unknown>;
      process.stdout.write(
        `receipt verifies (v${c.version}): ${String(body.kind)} ${String(body.org)}/${String(body.tenant)}` +
          `${typeof body.customer === 'string' ? `/${body.customer}` : ''}, completed ${String(body.completedAt)}` +
          `${body.softwareToken === true ? ' (made on a SOFTWARE token: final only if no copy of the token files survives)' : ''}\n`,
      );
      return;
    }
    process.stderr.write(`keybroker: receipt does NOT verify: ${c.reason ?? 'invalid'}\n`);
    process.exitCode = 1;
  },
};

export const receiptCommand: CommandModule = {
  command: 'receipt <command>',
  describe: 'shred receipts: verify offline against the pinned broker key',
  builder: (y) => y.command(verifyCommand as CommandModule).demandCommand(1),
  handler: () => undefined,
};
