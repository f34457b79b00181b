/**
 * Calls against the keybroker daemon (proto/keybroker/v1/crypto.proto), made with exactly the
 * client the echo ceiling uses. The tenant comes from each channel's client certificate, so data
 * that must exist before the window (ciphertexts to decrypt or rewrap) is prepared per channel.
 */
import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadProto, serviceConstructor } from '../lib/grpc-proto.ts';
import { benchCustomer } from './bench-names.ts';
import { duplex, unary } from './grpc-calls.ts';
import type { LoadOp, OpContext } from './load-generator.ts';
import type { OpSpec } from './load-spec.ts';

const MIB = 1024 * 1024;
const AAD = Buffer.from('bench:context');
/** Distinct ciphertexts per channel for Decrypt/Rewrap (enough to defeat any per-blob caching). */
const POOL = 64;

type DaemonOp = Extract<OpSpec, { kind: 'daemon' }>;

interface EncryptResponse {
  ciphertext: Buffer;
}
interface ItemOutcome {
  result?: unknown;
  error?: { reason: string; message: string };
}

/** Customer for call `seq`: the default one, or a pseudo-random one of `customers`. */
function customerFor(op: DaemonOp, seq: number): string {
  if (op.customers === undefined || op.customers <= 1) return '';
  // Multiplicative hash: consecutive calls land on unrelated customers (no cache-friendly order).
  return benchCustomer((Math.imul(seq + 1, 2654435761) >>> 0) % op.customers);
}

/** Build the op named by `op.rpc`. */
export async function createDaemonOp(ctx: OpContext, op: DaemonOp): Promise<LoadOp> {
  const protoDir = ctx.spec.protoDir;
  if (protoDir === undefined) throw new Error('daemon op without protoDir');
  const root = loadProto([join(protoDir, 'keybroker/v1/crypto.proto')], [protoDir]);
  const ctor = serviceConstructor(root, 'keybroker.v1.Crypto');
  const client = (ch: number): grpc.Client => ctx.channels.client(ch, ctor);
  const t = ctx.callTimeoutMs;
  const close = (): void => undefined;
  const plaintext = randomBytes(op.bytes);

  const encryptPool = async (): Promise<Buffer[][]> =>
    Promise.all(
      Array.from({ length: ctx.channels.size }, async (_, ch) => {
        if (ctx.spec.rotation !== undefined) throw new Error('Decrypt/Rewrap pools need fixed identities');
        const c = client(ch);
        const out: Buffer[] = [];
        for (let i = 0; i < POOL; i++) {
          const r = await unary<EncryptResponse>(c, 'encrypt', { customer: '', plaintext, aad: AAD }, t);
          out.push(r.ciphertext);
        }
        return out;
      }),
    );

  switch (op.rpc) {
    case 'encrypt':
      return {
        unitsPerCall: 1,
        call: async (ch, seq) => {
          const r = await unary<EncryptResponse>(
            client(ch),
            'encrypt',
            { customer: customerFor(op, seq), plaintext, aad: AAD },
            t,
          );
          if (r.ciphertext.length <= plaintext.length) throw new Error('Encrypt returned a short ciphertext');
        },
        close,
      };
    case 'decrypt': {
      const pools = await encryptPool();
      return {
        unitsPerCall: 1,
        call: async (ch, seq) => {
          const pool = pools[ch] ?? [];
          const r = await unary<{ plaintext: Buffer }>(
            client(ch),
            'decrypt',
            { ciphertext: pool[seq % pool.length], aad: AAD },
            t,
          );
          if (!r.plaintext.equals(plaintext)) throw new Error('Decrypt returned the wrong plaintext');
        },
        close,
      };
    }
    case 'rewrap': {
      const pools = await encryptPool();
      return {
        unitsPerCall: 1,
        call: async (ch, seq) => {
          const pool = pools[ch] ?? [];
          const r = await unary<EncryptResponse>(
            client(ch),
            'rewrap',
            { ciphertext: pool[seq % pool.length], aad: AAD },
            t,
          );
          if (r.ciphertext.length <= plaintext.length) throw new Error('Rewrap returned a short ciphertext');
        },
        close,
      };
    }
    case 'generate-data-key':
      return {
        unitsPerCall: 1,
        call: async (ch, seq) => {
          const r = await unary<{ plaintextKey: Buffer }>(
            client(ch),
            'generateDataKey',
            { customer: customerFor(op, seq), aad: AAD, length: 32 },
            t,
          );
          if (r.plaintextKey.length !== 32) throw new Error('GenerateDataKey returned a wrong-size key');
        },
        close,
      };
    case 'encrypt-batch': {
      const n = op.items ?? 100;
      const items = Array.from({ length: n }, () => ({
        customer: '',
        plaintext: randomBytes(op.bytes),
        aad: AAD,
      }));
      return {
        unitsPerCall: n,
        call: async (ch) => {
          const r = await unary<{ results: ItemOutcome[] }>(client(ch), 'encryptBatch', { items }, t);
          if (r.results.length !== n)
            throw new Error(`EncryptBatch returned ${r.results.length} results for ${n} items`);
          const bad = r.results.find((x) => x.error !== undefined && x.error !== null);
          if (bad?.error) throw new Error(`EncryptBatch item failed: ${bad.error.reason}`);
        },
        close,
      };
    }
    case 'encrypt-stream': {
      const total = op.totalBytes ?? 64 * MIB;
      const chunkBytes = op.chunkBytes ?? 64 * 1024;
      const chunk = randomBytes(chunkBytes);
      const n = Math.ceil(total / chunkBytes);
      const messages = function* (): Generator<object> {
        yield { init: { customer: '', aad: AAD } };
        for (let i = 0; i < n; i++) yield { plaintext: chunk };
      };
      return {
        unitsPerCall: total / MIB,
        call: async (ch) => {
          const out = await duplex<{ header?: Buffer; chunk?: Buffer }>(
            client(ch),
            'encryptStream',
            messages(),
            t,
          );
          let sealed = 0;
          for (const m of out) sealed += m.chunk?.length ?? 0;
          if (out[0]?.header === undefined || sealed < total) {
            throw new Error(`EncryptStream returned ${sealed} sealed bytes for ${total}`);
          }
        },
        close,
      };
    }
    default:
      throw new Error(`unknown daemon op ${op.rpc}`);
  }
}
