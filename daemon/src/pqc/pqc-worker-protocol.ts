/**
 * Messages between PqcWorkerPool and pqc-worker.ts. Requests travel in batches (the pool
 * coalesces what is queued for a worker into one postMessage); every byte array is a fresh copy
 * whose buffer is transferred, never the caller's own array.
 */
import type { EngineName, PrivateKeyForm } from './pqc-engine.ts';
import type { KemAlgorithm, PqcAlgorithm, SigAlgorithm } from './pqc-params.ts';

/** A private key as it crosses the thread boundary: storage form plus its public key. */
export interface WirePrivateKey {
  readonly form: PrivateKeyForm;
  readonly bytes: Uint8Array;
  readonly publicKey: Uint8Array;
}

export type PqcWorkerOp =
  | {
      readonly op: 'generateKeyPair';
      readonly engine: EngineName;
      readonly alg: PqcAlgorithm;
      readonly seed?: Uint8Array;
    }
  | {
      readonly op: 'encapsulate';
      readonly engine: EngineName;
      readonly alg: KemAlgorithm;
      readonly publicKey: Uint8Array;
    }
  | {
      readonly op: 'decapsulate';
      readonly engine: EngineName;
      readonly alg: KemAlgorithm;
      readonly key: WirePrivateKey;
      readonly cipherText: Uint8Array;
    }
  | {
      readonly op: 'sign';
      readonly engine: EngineName;
      readonly alg: SigAlgorithm;
      readonly key: WirePrivateKey;
      readonly message: Uint8Array;
      readonly context?: Uint8Array;
    }
  | {
      readonly op: 'verify';
      readonly engine: EngineName;
      readonly alg: SigAlgorithm;
      readonly publicKey: Uint8Array;
      readonly message: Uint8Array;
      readonly signature: Uint8Array;
      readonly context?: Uint8Array;
    }
  | {
      /** One key, many messages: one message to the worker instead of one per item. */
      readonly op: 'signMany';
      readonly engine: EngineName;
      readonly alg: SigAlgorithm;
      readonly key: WirePrivateKey;
      readonly messages: readonly Uint8Array[];
      readonly context?: Uint8Array;
    }
  | {
      readonly op: 'verifyMany';
      readonly engine: EngineName;
      readonly alg: SigAlgorithm;
      readonly items: readonly VerifyItem[];
    };

export interface VerifyItem {
  readonly publicKey: Uint8Array;
  readonly message: Uint8Array;
  readonly signature: Uint8Array;
  readonly context?: Uint8Array;
}

/** Per-item outcome of a batch: user errors stay with their item (Vault-style batches). */
export type ItemResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: string; readonly message: string };

export type PqcWorkerResult =
  | {
      readonly op: 'generateKeyPair';
      readonly publicKey: Uint8Array;
      readonly secretKey: Uint8Array;
      readonly seed?: Uint8Array;
    }
  | { readonly op: 'encapsulate'; readonly cipherText: Uint8Array; readonly sharedSecret: Uint8Array }
  | { readonly op: 'decapsulate'; readonly sharedSecret: Uint8Array }
  | { readonly op: 'sign'; readonly signature: Uint8Array }
  | { readonly op: 'verify'; readonly valid: boolean }
  | { readonly op: 'signMany'; readonly signatures: readonly ItemResult<Uint8Array>[] }
  | { readonly op: 'verifyMany'; readonly valid: readonly ItemResult<boolean>[] };

export interface PqcWorkerRequest {
  readonly id: number;
  readonly work: PqcWorkerOp;
}

export type PqcWorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: PqcWorkerResult }
  | { readonly id: number; readonly ok: false; readonly code: string; readonly message: string };

/** First message a worker sends: its engines are up and its own self-test result. */
export interface PqcWorkerReady {
  readonly ready: true;
  readonly selfTestOk: boolean;
  readonly failed: readonly string[];
}
