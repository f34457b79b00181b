/**
 * The post-quantum engine interface: ML-KEM (FIPS 203) and ML-DSA (FIPS 204) behind one flat,
 * synchronous API on Uint8Array. Two independent implementations: OpenSslEngine (Node's crypto,
 * OpenSSL 3.5) and LiboqsEngine (@oqs/liboqs-js, WebAssembly). The worker pool makes them async.
 *
 * Key forms: the storage form of a private key is its seed (64 B ML-KEM, 32 B ML-DSA); the
 * portable working form is the expanded FIPS encoding (dk / sk), which both engines accept.
 * `loadPrivateKey` turns either into an engine-prepared handle so the hot path never re-parses.
 *
 * Errors: bad input -> KbError INVALID_ARGUMENT (naming the parameter); an operation the engine
 * cannot do -> KbError UNIMPLEMENTED, and `capabilities` says so in advance so callers route.
 * ML-KEM decapsulation never fails on a well-formed ciphertext (implicit rejection returns a
 * pseudo-random secret, FIPS 203 §6.3); ML-DSA verification returns false on any bad signature.
 */
import type { SecretBytes } from '../util/secret-bytes.ts';
import type { KemAlgorithm, PqcAlgorithm, SigAlgorithm } from './pqc-params.ts';

export type EngineName = 'openssl' | 'liboqs';
export const ENGINE_NAMES: readonly EngineName[] = ['openssl', 'liboqs'];

/** What an engine can do; callers route on this instead of catching UNIMPLEMENTED. */
export interface EngineCapabilities {
  readonly kem: readonly KemAlgorithm[];
  readonly sig: readonly SigAlgorithm[];
  /** Deterministic key generation from a seed (FIPS 203 ML-KEM.KeyGen_internal, FIPS 204 Alg. 6). */
  readonly keygenFromSeed: boolean;
  /** ML-DSA sign/verify with a non-empty context string. */
  readonly signContext: boolean;
  /** Why a capability is missing, for logs and the self-test report. */
  readonly notes: readonly string[];
}

export interface PqcKeyPair {
  readonly alg: PqcAlgorithm;
  readonly publicKey: Uint8Array;
  /** Expanded private key (FIPS 203 dk / FIPS 204 sk). */
  readonly secretKey: SecretBytes;
  /** The seed the pair was derived from; undefined when the engine cannot keygen from seed. */
  readonly seed: SecretBytes | undefined;
}

/** An engine-prepared private key. Destroy it when evicted; later use throws. */
export interface PqcPrivateKey {
  readonly alg: PqcAlgorithm;
  readonly engine: EngineName;
  readonly publicKey: Uint8Array;
  destroy(): void;
}

/** The most encapsulations one `encapsulateMany` call makes. */
export const MAX_ENCAPSULATIONS = 100_000;

export interface Encapsulation {
  readonly cipherText: Uint8Array;
  /** 32 bytes; the caller zeroes it after use. */
  readonly sharedSecret: Uint8Array;
}

/** How a private key is handed to `loadPrivateKey`. */
export type PrivateKeyForm = 'seed' | 'expanded';

export interface PqcEngine {
  readonly name: EngineName;
  readonly capabilities: EngineCapabilities;

  /** Fresh key pair; with `seed`, deterministic (needs `keygenFromSeed`). */
  generateKeyPair(alg: PqcAlgorithm, seed?: Uint8Array): PqcKeyPair;
  /**
   * Prepare a private key. `publicKey`, when given, must match the private key (checked:
   * a mismatch is INVALID_ARGUMENT), which catches corrupted keys before first use.
   */
  loadPrivateKey(
    alg: PqcAlgorithm,
    form: PrivateKeyForm,
    bytes: Uint8Array,
    publicKey?: Uint8Array,
  ): PqcPrivateKey;

  /** Encapsulate to `publicKey`; rejects keys that fail the FIPS 203 §7.2 modulus check. */
  encapsulate(alg: KemAlgorithm, publicKey: Uint8Array): Encapsulation;
  /**
   * `count` independent encapsulations to one `publicKey` (at most MAX_ENCAPSULATIONS): the key
   * is checked and prepared once, not per item.
   */
  encapsulateMany(alg: KemAlgorithm, publicKey: Uint8Array, count: number): Encapsulation[];
  /** Decapsulate; never throws for a ciphertext of the right length (implicit rejection). */
  decapsulate(key: PqcPrivateKey, cipherText: Uint8Array): Uint8Array;

  /** ML-DSA.Sign (hedged). A non-empty `context` needs `signContext`. */
  sign(key: PqcPrivateKey, message: Uint8Array, context?: Uint8Array): Uint8Array;
  /** ML-DSA.Verify; false for any invalid signature. Malformed public keys are INVALID_ARGUMENT. */
  verify(
    alg: SigAlgorithm,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context?: Uint8Array,
  ): boolean;
}
