/** Calls against the echo ceiling server (bench/echo/echo.proto). */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadProto, serviceConstructor } from '../lib/grpc-proto.ts';
import type * as grpc from '@grpc/grpc-js';
import { duplex, unary } from './grpc-calls.ts';
import type { LoadOp, OpContext } from './load-generator.ts';
import type { OpSpec } from './load-spec.ts';

const ECHO_DIR = join(import.meta.dirname, '../echo');
const MIB = 1024 * 1024;

/** Unary echo of a payload, a batch echo of items, or a streamed echo of totalBytes. */
export async function createEchoOp(
  ctx: OpContext,
  op: Exclude<OpSpec, { kind: 'daemon' | 'keys' | 'blind-index' }>,
): Promise<LoadOp> {
  const root = loadProto([join(ECHO_DIR, 'echo.proto')], [ECHO_DIR]);
  const ctor = serviceConstructor(root, 'keybroker.bench.v1.EchoService');
  const client = (ch: number): grpc.Client => ctx.channels.client(ch, ctor);
  const t = ctx.callTimeoutMs;
  const close = (): void => undefined;
  switch (op.kind) {
    case 'echo': {
      const payload = randomBytes(op.bytes);
      return {
        unitsPerCall: 1,
        call: async (ch) => void (await unary(client(ch), 'echo', { payload }, t)),
        close,
      };
    }
    case 'echo-batch': {
      const items = Array.from({ length: op.items }, () => randomBytes(op.bytes));
      return {
        unitsPerCall: op.items,
        call: async (ch) => void (await unary(client(ch), 'echo', { items }, t)),
        close,
      };
    }
    case 'echo-stream': {
      const chunk = randomBytes(op.chunkBytes);
      const n = Math.ceil(op.totalBytes / op.chunkBytes);
      const chunks = function* (): Generator<{ data: Buffer }> {
        for (let i = 0; i < n; i++) yield { data: chunk };
      };
      return {
        unitsPerCall: op.totalBytes / MIB,
        call: async (ch) => {
          const got = await duplex<{ data: Buffer }>(client(ch), 'echoStream', chunks(), t);
          if (got.length !== n) throw new Error(`echo stream returned ${got.length} chunks, sent ${n}`);
        },
        close,
      };
    }
  }
}
