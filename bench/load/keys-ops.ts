/**
 * Post-quantum calls through the daemon's Keys service (proto/keybroker/v1/keys.proto). Each
 * load generator creates its own key for the calling tenant first (CreateKey needs no admin),
 * then calls one operation on it; the version is pinned from the create response.
 */
import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadProto, serviceConstructor } from '../lib/grpc-proto.ts';
import { unary } from './grpc-calls.ts';
import type { LoadOp, OpContext } from './load-generator.ts';

/** The Keys-service operations the catalogue knows, with the key algorithm each needs. */
export const KEYS_OPS = {
  'mlkem768-encapsulate': 'KEY_ALGORITHM_ML_KEM_768',
  'mlkem768-decapsulate': 'KEY_ALGORITHM_ML_KEM_768',
  'xwing-decapsulate': 'KEY_ALGORITHM_X_WING',
  'mldsa65-sign': 'KEY_ALGORITHM_ML_DSA_65',
  'mldsa65-verify': 'KEY_ALGORITHM_ML_DSA_65',
  'composite-sign': 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256',
  'mldsa65-sign-batch64': 'KEY_ALGORITHM_ML_DSA_65',
  'mldsa65-verify-batch64': 'KEY_ALGORITHM_ML_DSA_65',
  'mlkem768-decapsulate-batch64': 'KEY_ALGORITHM_ML_KEM_768',
  'mlkem768-encapsulate-batch64': 'KEY_ALGORITHM_ML_KEM_768',
  'mlkem768-decapsulate-batch256': 'KEY_ALGORITHM_ML_KEM_768',
  'mlkem768-encapsulate-batch256': 'KEY_ALGORITHM_ML_KEM_768',
} as const;
export type KeysOpName = keyof typeof KEYS_OPS;

/** Items per call of an operation: the `-batchN` suffix, or 1 (a batch op's rate is items/s). */
export function keysBatchItems(name: string): number {
  const m = /-batch(\d+)$/.exec(name);
  return m === null ? 1 : Number(m[1]);
}
/** ML-KEM-768 ciphertext bytes (FIPS 203); the load client checks what EncapsulateBatch returns. */
const MLKEM768_CIPHERTEXT = 1088;

interface CreateKeyResponse {
  key: { keyId: string; primaryVersion: number };
}

/** Create a key of the op's algorithm, prepare inputs, and return the timed call. */
export async function createKeysOp(ctx: OpContext, name: KeysOpName): Promise<LoadOp> {
  const protoDir = ctx.spec.protoDir;
  if (protoDir === undefined) throw new Error('keys op without protoDir');
  const root = loadProto([join(protoDir, 'keybroker/v1/keys.proto')], [protoDir]);
  const ctor = serviceConstructor(root, 'keybroker.v1.Keys');
  const client = (ch: number): grpc.Client => ctx.channels.client(ch, ctor);
  const t = ctx.callTimeoutMs;
  const keyId = `bench-${name}-${randomBytes(4).toString('hex')}`;
  const created = await unary<CreateKeyResponse>(
    client(0),
    'createKey',
    { keyId, algorithm: KEYS_OPS[name] },
    t,
  );
  const version = created.key.primaryVersion;
  const message = randomBytes(256);
  const items = keysBatchItems(name);
  const close = (): void => undefined;
  switch (name) {
    case 'mlkem768-encapsulate':
      return {
        unitsPerCall: 1,
        close,
        call: async (ch) => void (await unary(client(ch), 'encapsulate', { keyId }, t)),
      };
    case 'mlkem768-decapsulate':
    case 'xwing-decapsulate': {
      const enc = await unary<{ ciphertext: Buffer; sharedSecret: Buffer }>(
        client(0),
        'encapsulate',
        { keyId },
        t,
      );
      return {
        unitsPerCall: 1,
        close,
        call: async (ch) => {
          const r = await unary<{ sharedSecret: Buffer }>(
            client(ch),
            'decapsulate',
            { keyId, version, ciphertext: enc.ciphertext },
            t,
          );
          if (!r.sharedSecret.equals(enc.sharedSecret))
            throw new Error('Decapsulate returned another shared secret');
        },
      };
    }
    case 'mldsa65-sign':
    case 'composite-sign':
      return {
        unitsPerCall: 1,
        close,
        call: async (ch) => void (await unary(client(ch), 'sign', { keyId, message }, t)),
      };
    case 'mldsa65-sign-batch64': {
      const messages = Array.from({ length: items }, () => message);
      return {
        unitsPerCall: items,
        close,
        call: async (ch) => {
          const r = await unary<{ results: { signature?: Buffer }[] }>(
            client(ch),
            'signBatch',
            { keyId, messages },
            t,
          );
          if (r.results.length !== items || r.results.some((x) => x.signature === undefined))
            throw new Error('SignBatch returned fewer signatures than messages');
        },
      };
    }
    case 'mldsa65-verify-batch64': {
      const s = await unary<{ signature: Buffer }>(client(0), 'sign', { keyId, message }, t);
      const pairs = Array.from({ length: items }, () => ({ message, signature: s.signature }));
      return {
        unitsPerCall: items,
        close,
        call: async (ch) => {
          const r = await unary<{ results: { valid: boolean }[] }>(
            client(ch),
            'verifyBatch',
            { keyId, version, items: pairs },
            t,
          );
          if (r.results.length !== items || r.results.some((x) => x.valid !== true))
            throw new Error('VerifyBatch said a signature is invalid');
        },
      };
    }
    case 'mlkem768-encapsulate-batch64':
    case 'mlkem768-encapsulate-batch256':
      return {
        unitsPerCall: items,
        close,
        call: async (ch) => {
          const r = await unary<{ results: { ciphertext?: Buffer; sharedSecret?: Buffer }[] }>(
            client(ch),
            'encapsulateBatch',
            { keyId, count: items },
            t,
          );
          if (
            r.results.length !== items ||
            r.results.some(
              (x) => x.ciphertext?.length !== MLKEM768_CIPHERTEXT || x.sharedSecret?.length !== 32,
            )
          )
            throw new Error('EncapsulateBatch returned fewer or malformed encapsulations');
        },
      };
    case 'mlkem768-decapsulate-batch64':
    case 'mlkem768-decapsulate-batch256': {
      const enc = await unary<{ ciphertext: Buffer; sharedSecret: Buffer }>(
        client(0),
        'encapsulate',
        { keyId },
        t,
      );
      const ciphertexts = Array.from({ length: items }, () => enc.ciphertext);
      return {
        unitsPerCall: items,
        close,
        call: async (ch) => {
          const r = await unary<{ results: { sharedSecret?: Buffer }[] }>(
            client(ch),
            'decapsulateBatch',
            { keyId, version, ciphertexts },
            t,
          );
          if (r.results.length !== items || r.results.some((x) => !x.sharedSecret?.equals(enc.sharedSecret)))
            throw new Error('DecapsulateBatch returned another shared secret');
        },
      };
    }
    case 'mldsa65-verify': {
      const s = await unary<{ signature: Buffer }>(client(0), 'sign', { keyId, message }, t);
      return {
        unitsPerCall: 1,
        close,
        call: async (ch) => {
          const r = await unary<{ valid: boolean }>(
            client(ch),
            'verify',
            { keyId, version, message, signature: s.signature },
            t,
          );
          if (r.valid !== true) throw new Error('Verify said the signature is invalid');
        },
      };
    }
  }
}
