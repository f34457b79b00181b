/**
 * A fake Hsm on Node crypto, for UNIT tests of logic above the Hsm interface only (caches,
 * degraded mode, single-flight). Integration tests use SoftHSM2 through Pkcs11Hsm.
 * Root keys wrap with AES-KWP (RFC 5649, as SoftHSM's CKM_AES_KEY_WRAP_PAD); `down` simulates an outage.
 */
import { createCipheriv, createDecipheriv, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { decryptionFailed, KbError } from '../../daemon/src/errors.ts';
import type {
  Hsm,
  HsmCapabilities,
  HsmHealth,
  HsmKeyRef,
  HsmSigningAlgorithm,
} from '../../daemon/src/hsm/hsm.ts';

const KWP_IV = Buffer.from('a65959a6', 'hex');

export class FakeHsm implements Hsm {
  readonly profileName = 'fake';
  readonly capabilities: HsmCapabilities = { wrap: 'aes-kwp', aesGcm: true, signing: ['ecdsa-p256'] };
  readonly #roots = new Map<string, Buffer>();
  readonly #signers = new Map<string, { priv: KeyObject; spki: Uint8Array }>();
  /** While true every call throws HSM_UNAVAILABLE and health() is not ok. */
  down = false;
  /** Calls per method name, for tests that assert the HSM was (not) touched. */
  readonly calls = new Map<string, number>();
  /** Artificial latency (ms) of unwrapKey, to make concurrent misses overlap. */
  unwrapDelayMs = 0;
  /** Crash simulation: once `method` has been called `after` more times, it throws (until cleared). */
  crash: { method: string; after: number } | undefined;

  #enter(name: string): void {
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
    if (this.down) throw new KbError('HSM_UNAVAILABLE');
    if (this.crash?.method === name) {
      if (this.crash.after <= 0) throw new Error(`injected crash in ${name}`);
      this.crash.after--;
    }
  }

  /** Number of root keys held (for tests that check destruction). */
  get rootKeyCount(): number {
    return this.#roots.size;
  }
  #root(ref: HsmKeyRef): Buffer {
    const k = this.#roots.get(ref.label);
    if (!k) throw decryptionFailed();
    return k;
  }

  async generateRootKey(label: string): Promise<HsmKeyRef> {
    this.#enter('generateRootKey');
    if (this.#roots.has(label)) throw new KbError('ALREADY_EXISTS');
    this.#roots.set(label, randomBytes(32));
    return { label, kind: 'root' };
  }
  async findKey(label: string, kind: HsmKeyRef['kind']): Promise<HsmKeyRef | undefined> {
    this.#enter('findKey');
    const has = kind === 'root' ? this.#roots.has(label) : this.#signers.has(label);
    return has ? { label, kind } : undefined;
  }
  async destroyKey(ref: HsmKeyRef): Promise<void> {
    this.#enter('destroyKey');
    this.#roots.get(ref.label)?.fill(0);
    this.#roots.delete(ref.label);
    this.#signers.delete(ref.label);
  }
  async wrapKey(root: HsmKeyRef, key: Uint8Array): Promise<Uint8Array> {
    this.#enter('wrapKey');
    const c = createCipheriv('id-aes256-wrap-pad', this.#root(root), KWP_IV);
    return new Uint8Array(Buffer.concat([c.update(key), c.final()]));
  }
  async unwrapKey(root: HsmKeyRef, wrapped: Uint8Array): Promise<Uint8Array> {
    this.#enter('unwrapKey');
    if (this.unwrapDelayMs > 0) await new Promise((r) => setTimeout(r, this.unwrapDelayMs));
    try {
      const d = createDecipheriv('id-aes256-wrap-pad', this.#root(root), KWP_IV);
      return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
    } catch (err) {
      throw decryptionFailed(err);
    }
  }
  async encryptGcm(root: HsmKeyRef, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    this.#enter('encryptGcm');
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#root(root), iv);
    c.setAAD(aad);
    return new Uint8Array(Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]));
  }
  async decryptGcm(root: HsmKeyRef, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    this.#enter('decryptGcm');
    try {
      const d = createDecipheriv('aes-256-gcm', this.#root(root), sealed.subarray(0, 12));
      d.setAAD(aad);
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      return new Uint8Array(Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]));
    } catch (err) {
      throw decryptionFailed(err);
    }
  }
  async generateSigningKey(
    label: string,
    alg: HsmSigningAlgorithm,
  ): Promise<{ ref: HsmKeyRef; spki: Uint8Array }> {
    this.#enter('generateSigningKey');
    if (alg !== 'ecdsa-p256') throw new KbError('ALGORITHM_NOT_ALLOWED');
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
    this.#signers.set(label, { priv: privateKey, spki });
    return { ref: { label, kind: 'signing' }, spki };
  }
  async publicKey(ref: HsmKeyRef): Promise<Uint8Array> {
    this.#enter('publicKey');
    const s = this.#signers.get(ref.label);
    if (!s) throw new KbError('NOT_FOUND');
    return s.spki;
  }
  async sign(
    ref: HsmKeyRef,
    message: Uint8Array,
  ): Promise<{ alg: HsmSigningAlgorithm; signature: Uint8Array }> {
    this.#enter('sign');
    const s = this.#signers.get(ref.label);
    if (!s) throw new KbError('NOT_FOUND');
    return { alg: 'ecdsa-p256', signature: new Uint8Array(sign('sha256', message, s.priv)) };
  }
  async generateRandom(length: number): Promise<Uint8Array> {
    this.#enter('generateRandom');
    return new Uint8Array(randomBytes(length));
  }
  health(): HsmHealth {
    return this.down
      ? { ok: false, reason: 'fake outage', sessionsInUse: 0, sessionsTotal: 0 }
      : { ok: true, sessionsInUse: 0, sessionsTotal: 1 };
  }
  async close(): Promise<void> {
    this.#roots.clear();
  }
}
