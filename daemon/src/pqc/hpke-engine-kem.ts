/**
 * HPKE KEMs (the @hpke/core KemInterface) backed by our engines, so sealed boxes use native
 * OpenSSL ML-KEM / X-Wing instead of the packages' pure-JavaScript KEMs (about 10x faster), while
 * the key schedule and AEAD stay @hpke/core's. Wire behaviour equals @hpke/ml-kem (KEM 0x0041)
 * and @hpke/hybridkem-x-wing (KEM 0x647a); tests check both directions against them.
 *
 * Keys are opaque objects carrying raw bytes: public = the encoded public key, private = the
 * seed (64 B ML-KEM d ‖ z, 32 B X-Wing), or an already loaded key for the hot path.
 * Derandomized encapsulation (`ekm`) and DeriveKeyPair are not offered: sealed boxes never use
 * them, and our engines cannot inject encapsulation randomness.
 */
import {
  KemId,
  NotSupportedError,
  type KemInterface,
  type RecipientContextParams,
  type SenderContextParams,
} from '@hpke/core';
import { KbError } from '../errors.ts';
import type { PqcEngine, PqcPrivateKey } from './pqc-engine.ts';
import { XWing, type XWingPrivateKey } from './xwing.ts';

type HpkeKey = Awaited<ReturnType<KemInterface['deserializePublicKey']>>;
type HpkeKeyPair = Awaited<ReturnType<KemInterface['generateKeyPair']>>;
type HpkeJwk = Exclude<Parameters<KemInterface['importKey']>[1], ArrayBuffer>;

/** A raw key in the shape @hpke/core passes around (it only hands keys back to the KEM). */
export class EngineHpkeKey {
  readonly type: 'public' | 'private';
  readonly extractable = false;
  readonly algorithm: { name: string };
  readonly usages: string[];
  readonly raw: Uint8Array;
  readonly loaded: PqcPrivateKey | XWingPrivateKey | undefined;

  constructor(
    name: string,
    type: 'public' | 'private',
    raw: Uint8Array,
    loaded?: PqcPrivateKey | XWingPrivateKey,
  ) {
    this.type = type;
    this.algorithm = { name };
    this.usages = type === 'private' ? ['deriveBits'] : [];
    this.raw = raw;
    this.loaded = loaded;
  }

  /** Zero the seed copy and free the loaded key (a private key dropped by its owner). */
  destroy(): void {
    if (this.type !== 'private') return;
    this.raw.fill(0);
    this.loaded?.destroy();
  }
}

const u8 = (b: ArrayBufferLike | ArrayBufferView): Uint8Array =>
  ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b);

function ab(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function asKey(k: unknown, type: 'public' | 'private'): EngineHpkeKey {
  if (!(k instanceof EngineHpkeKey) || k.type !== type)
    throw new KbError('INVALID_ARGUMENT', `expected a ${type} key of this KEM`);
  return k;
}

/** ML-KEM-768 (0x0041) or X-Wing (0x647a) for @hpke/core, on a PqcEngine with keygen from seed. */
export class EngineHpkeKem implements KemInterface {
  readonly id: KemId;
  readonly secretSize = 32;
  readonly encSize: number;
  readonly publicKeySize: number;
  readonly privateKeySize: number;
  readonly #name: string;
  readonly #engine: PqcEngine;
  readonly #xwing: XWing | undefined;

  constructor(kem: 'ml-kem-768' | 'x-wing', engine: PqcEngine) {
    this.#engine = engine;
    this.#name = kem;
    if (kem === 'x-wing') {
      this.id = KemId.XWing;
      this.#xwing = new XWing(engine);
      [this.encSize, this.publicKeySize, this.privateKeySize] = [1120, 1216, 32];
    } else {
      this.id = KemId.MlKem768;
      this.#xwing = undefined;
      [this.encSize, this.publicKeySize, this.privateKeySize] = [1088, 1184, 64];
    }
  }

  /** A private key loaded once (seed expanded), for repeated opens. */
  loadPrivateKey(seed: Uint8Array): EngineHpkeKey {
    if (seed.length !== this.privateKeySize)
      throw new KbError('INVALID_ARGUMENT', `recipientPrivateKey must be ${this.privateKeySize} bytes`);
    const loaded =
      this.#xwing !== undefined
        ? this.#xwing.loadPrivateKey(seed)
        : this.#engine.loadPrivateKey('ml-kem-768', 'seed', seed);
    return new EngineHpkeKey(this.#name, 'private', Uint8Array.from(seed), loaded);
  }

  serializePublicKey(key: HpkeKey): Promise<ArrayBuffer> {
    return Promise.resolve(ab(asKey(key, 'public').raw));
  }

  deserializePublicKey(key: ArrayBufferLike | ArrayBufferView): Promise<HpkeKey> {
    const raw = u8(key);
    if (raw.length !== this.publicKeySize)
      return Promise.reject(
        new KbError('INVALID_ARGUMENT', `public key must be ${this.publicKeySize} bytes`),
      );
    return Promise.resolve(
      new EngineHpkeKey(this.#name, 'public', Uint8Array.from(raw)) as unknown as HpkeKey,
    );
  }

  serializePrivateKey(key: HpkeKey): Promise<ArrayBuffer> {
    return Promise.resolve(ab(asKey(key, 'private').raw));
  }

  deserializePrivateKey(key: ArrayBufferLike | ArrayBufferView): Promise<HpkeKey> {
    try {
      return Promise.resolve(this.loadPrivateKey(u8(key)) as unknown as HpkeKey);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  importKey(format: 'raw' | 'jwk', key: ArrayBuffer | HpkeJwk, isPublic = true): Promise<HpkeKey> {
    if (format !== 'raw' || !(key instanceof ArrayBuffer || ArrayBuffer.isView(key))) {
      return Promise.reject(new NotSupportedError('only raw keys'));
    }
    return isPublic ? this.deserializePublicKey(key) : this.deserializePrivateKey(key);
  }

  generateKeyPair(): Promise<HpkeKeyPair> {
    return Promise.reject(
      new NotSupportedError('generate keys with the engine; sealed boxes only encapsulate'),
    );
  }

  deriveKeyPair(): Promise<HpkeKeyPair> {
    return Promise.reject(new NotSupportedError('DeriveKeyPair is not offered'));
  }

  encap(params: SenderContextParams): Promise<{ sharedSecret: ArrayBuffer; enc: ArrayBuffer }> {
    if (params.ekm !== undefined) return Promise.reject(new NotSupportedError('derandomized encapsulation'));
    const pk = asKey(params.recipientPublicKey, 'public').raw;
    const r =
      this.#xwing !== undefined ? this.#xwing.encapsulate(pk) : this.#engine.encapsulate('ml-kem-768', pk);
    const out = { sharedSecret: ab(r.sharedSecret), enc: ab(r.cipherText) };
    r.sharedSecret.fill(0);
    return Promise.resolve(out);
  }

  decap(params: RecipientContextParams): Promise<ArrayBuffer> {
    try {
      const rk = 'privateKey' in params.recipientKey ? params.recipientKey.privateKey : params.recipientKey;
      const key = asKey(rk, 'private');
      const enc = u8(params.enc);
      if (enc.length !== this.encSize) throw new KbError('INVALID_ARGUMENT', 'enc has the wrong length');
      const ss =
        this.#xwing !== undefined
          ? this.#xwing.decapsulate(key.loaded as XWingPrivateKey, enc)
          : this.#engine.decapsulate(key.loaded as PqcPrivateKey, enc);
      const out = ab(ss);
      ss.fill(0);
      return Promise.resolve(out);
    } catch (err) {
      return Promise.reject(err);
    }
  }
}
