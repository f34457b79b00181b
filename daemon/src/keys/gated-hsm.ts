/**
 * The Hsm with a bound on the calls the key hierarchy keeps in flight (default 1).
 *
 * Why: before HSM commit 889befb, two concurrent unwrapKey calls through Pkcs11Hsm on SoftHSM
 * 2.6.1 crashed the process (heap corruption, SIGSEGV) or failed with CKR_GENERAL_ERROR in our
 * runs; since then they pass, and test/keys/concurrency.test.ts runs with 4 in flight. The
 * default stays 1 because SoftHSM serialises symmetric work internally anyway (PLATFORM.md:
 * 0.72-0.96x with two threads) and the caches keep the HSM off the hot path, so it costs nothing
 * there; raise `hsmConcurrency` for an HSM that scales with parallel sessions.
 */
import type {
  Hsm,
  HsmCapabilities,
  HsmHealth,
  HsmKeyRef,
  HsmSigningAlgorithm,
  RootKeyOptions,
} from '../hsm/hsm.ts';

export class GatedHsm implements Hsm {
  readonly #hsm: Hsm;
  readonly #max: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(hsm: Hsm, maxInFlight: number) {
    this.#hsm = hsm;
    this.#max = Math.max(1, maxInFlight);
  }

  get profileName(): string {
    return this.#hsm.profileName;
  }
  get capabilities(): HsmCapabilities {
    return this.#hsm.capabilities;
  }

  async #gate<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) await new Promise<void>((r) => this.#waiting.push(r));
    else this.#active++;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }

  generateRootKey(label: string, opts?: RootKeyOptions): Promise<HsmKeyRef> {
    return this.#gate(() => this.#hsm.generateRootKey(label, opts));
  }
  findKey(label: string, kind: HsmKeyRef['kind']): Promise<HsmKeyRef | undefined> {
    return this.#gate(() => this.#hsm.findKey(label, kind));
  }
  destroyKey(ref: HsmKeyRef): Promise<void> {
    return this.#gate(() => this.#hsm.destroyKey(ref));
  }
  wrapKey(root: HsmKeyRef, key: Uint8Array): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.wrapKey(root, key));
  }
  unwrapKey(root: HsmKeyRef, wrapped: Uint8Array): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.unwrapKey(root, wrapped));
  }
  encryptGcm(root: HsmKeyRef, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.encryptGcm(root, plaintext, aad));
  }
  decryptGcm(root: HsmKeyRef, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.decryptGcm(root, sealed, aad));
  }
  generateSigningKey(label: string, alg: HsmSigningAlgorithm): Promise<{ ref: HsmKeyRef; spki: Uint8Array }> {
    return this.#gate(() => this.#hsm.generateSigningKey(label, alg));
  }
  publicKey(ref: HsmKeyRef): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.publicKey(ref));
  }
  sign(ref: HsmKeyRef, message: Uint8Array): Promise<{ alg: HsmSigningAlgorithm; signature: Uint8Array }> {
    return this.#gate(() => this.#hsm.sign(ref, message));
  }
  generateRandom(length: number): Promise<Uint8Array> {
    return this.#gate(() => this.#hsm.generateRandom(length));
  }
  health(): HsmHealth {
    return this.#hsm.health();
  }
  /** The gate does not own the HSM: closing is the owner's job. */
  async close(): Promise<void> {}
}
