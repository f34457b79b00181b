/**
 * An Hsm decorator that records the latency and failures of every call in metrics. The broker
 * sees the same interface; only the composition root knows it is wrapped.
 */
import { toKbError } from '../errors.ts';
import type {
  Hsm,
  HsmCapabilities,
  HsmHealth,
  HsmKeyRef,
  HsmSigningAlgorithm,
  RootKeyOptions,
} from '../hsm/hsm.ts';
import type { Metrics } from './metrics.ts';

export class InstrumentedHsm implements Hsm {
  readonly #inner: Hsm;
  readonly #metrics: Metrics;

  constructor(inner: Hsm, metrics: Metrics) {
    this.#inner = inner;
    this.#metrics = metrics;
  }

  get profileName(): string {
    return this.#inner.profileName;
  }
  get capabilities(): HsmCapabilities {
    return this.#inner.capabilities;
  }

  async #time<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const end = this.#metrics.hsmCalls.startTimer({ op });
    try {
      const out = await fn();
      end({ outcome: 'ok' });
      return out;
    } catch (err) {
      end({ outcome: 'error' });
      this.#metrics.hsmErrors.inc({ op, code: toKbError(err).code });
      throw err;
    }
  }

  generateRootKey(label: string, opts?: RootKeyOptions): Promise<HsmKeyRef> {
    return this.#time('generate_root_key', () => this.#inner.generateRootKey(label, opts));
  }
  findKey(label: string, kind: HsmKeyRef['kind']): Promise<HsmKeyRef | undefined> {
    return this.#time('find_key', () => this.#inner.findKey(label, kind));
  }
  destroyKey(ref: HsmKeyRef): Promise<void> {
    return this.#time('destroy_key', () => this.#inner.destroyKey(ref));
  }
  wrapKey(root: HsmKeyRef, key: Uint8Array): Promise<Uint8Array> {
    return this.#time('wrap_key', () => this.#inner.wrapKey(root, key));
  }
  unwrapKey(root: HsmKeyRef, wrapped: Uint8Array): Promise<Uint8Array> {
    return this.#time('unwrap_key', () => this.#inner.unwrapKey(root, wrapped));
  }
  encryptGcm(root: HsmKeyRef, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.#time('encrypt_gcm', () => this.#inner.encryptGcm(root, plaintext, aad));
  }
  decryptGcm(root: HsmKeyRef, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.#time('decrypt_gcm', () => this.#inner.decryptGcm(root, sealed, aad));
  }
  generateSigningKey(label: string, alg: HsmSigningAlgorithm): Promise<{ ref: HsmKeyRef; spki: Uint8Array }> {
    return this.#time('generate_signing_key', () => this.#inner.generateSigningKey(label, alg));
  }
  publicKey(ref: HsmKeyRef): Promise<Uint8Array> {
    return this.#time('public_key', () => this.#inner.publicKey(ref));
  }
  sign(ref: HsmKeyRef, message: Uint8Array): Promise<{ alg: HsmSigningAlgorithm; signature: Uint8Array }> {
    return this.#time('sign', () => this.#inner.sign(ref, message));
  }
  generateRandom(length: number): Promise<Uint8Array> {
    return this.#time('generate_random', () => this.#inner.generateRandom(length));
  }
  health(): HsmHealth {
    return this.#inner.health();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}
