/**
 * Blind-index calls through the daemon's BlindIndexes service (proto/keybroker/v1/blind_index.proto)
 * on the index the daemon phase defined (NFKC, lowercase, trim; 32-byte tokens): ComputeBlindIndex
 * of one email-like value per call, or ComputeBlindIndexBatch of `values` per call (items/s).
 */
import type * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { loadProto, serviceConstructor } from '../lib/grpc-proto.ts';
import { BENCH_BLIND_INDEX } from './bench-names.ts';
import { unary } from './grpc-calls.ts';
import type { LoadOp, OpContext } from './load-generator.ts';

/** Distinct values the calls cycle through (so no layer can cache one answer). */
const POOL = 4096;
const value = (i: number): Buffer => Buffer.from(` User.${i % POOL}@Example.COM `);

export async function createBlindIndexOp(ctx: OpContext, values: number): Promise<LoadOp> {
  const protoDir = ctx.spec.protoDir;
  if (protoDir === undefined) throw new Error('blind-index op without protoDir');
  const root = loadProto([join(protoDir, 'keybroker/v1/blind_index.proto')], [protoDir]);
  const ctor = serviceConstructor(root, 'keybroker.v1.BlindIndexes');
  const client = (ch: number): grpc.Client => ctx.channels.client(ch, ctor);
  const t = ctx.callTimeoutMs;
  const close = (): void => undefined;
  if (values === 1) {
    return {
      unitsPerCall: 1,
      close,
      call: async (ch, seq) => {
        const r = await unary<{ tokens: { token: Buffer }[] }>(
          client(ch),
          'computeBlindIndex',
          { index: BENCH_BLIND_INDEX, value: value(seq) },
          t,
        );
        if (r.tokens[0]?.token.length !== 32) throw new Error('ComputeBlindIndex: no 32-byte token');
      },
    };
  }
  const batches = Array.from({ length: 16 }, (_, b) =>
    Array.from({ length: values }, (_, i) => value(b * values + i)),
  );
  return {
    unitsPerCall: values,
    close,
    call: async (ch, seq) => {
      const r = await unary<{ results: { result?: unknown }[] }>(
        client(ch),
        'computeBlindIndexBatch',
        { index: BENCH_BLIND_INDEX, values: batches[seq % batches.length] },
        t,
      );
      if (r.results.length !== values || r.results.some((x) => x.result === undefined))
        throw new Error('ComputeBlindIndexBatch: a value without its token');
    },
  };
}
