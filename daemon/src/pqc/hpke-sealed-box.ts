/**
 * Sealed boxes: HPKE (RFC 9180) base mode, single-shot, with a post-quantum KEM, HKDF-SHA256 and
 * AES-256-GCM. @hpke/core runs the protocol (key schedule, labels, nonces, contexts); the KEM is
 * ours (hpke-engine-kem.ts, native OpenSSL through our engines) and its HKDF and AES-GCM
 * primitives run on node:crypto (hpke-node-kdf.ts, hpke-node-aead.ts) — 5-8x faster than the
 * packages' JavaScript KEMs and WebCrypto. Wire-compatible with @hpke/ml-kem and
 * @hpke/hybridkem-x-wing, which the tests use as oracles in both directions:
 *   - 'ml-kem-768': KEM id 0x0041 (draft-ietf-hpke-pq), private key = 64-byte seed d ‖ z;
 *   - 'x-wing':     KEM id 0x647a (draft-connolly-cfrg-xwing-kem), private key = 32-byte seed.
 * These are the same seeds keybroker stores for its ML-KEM-768 and X-Wing keys.
 *
 * Sealed box layout (what `seal` returns and `open` takes):  enc (1088 | 1120 bytes) ‖ AEAD ct.
 * Any failure to open — wrong key, tampered byte, wrong info or AAD, truncation — is the one
 * opaque DECRYPTION_FAILED error.
 */
import { CipherSuite } from '@hpke/core';
import { KbError, decryptionFailed } from '../errors.ts';
import { EngineHpkeKem, EngineHpkeKey } from './hpke-engine-kem.ts';
import { NodeAes256Gcm } from './hpke-node-aead.ts';
import { NodeHkdfSha256 } from './hpke-node-kdf.ts';
import { OpenSslEngine } from './openssl-engine.ts';
import { assertBytes, assertOneOf, MAX_MESSAGE_BYTES } from './pqc-assert.ts';
import type { PqcEngine } from './pqc-engine.ts';

export const SEALED_BOX_KEMS = ['ml-kem-768', 'x-wing'] as const;
export type SealedBoxKem = (typeof SEALED_BOX_KEMS)[number];

export const SEALED_BOX_LENGTHS: Readonly<
  Record<SealedBoxKem, { kemId: number; enc: number; publicKey: number; privateKey: number; tag: 16 }>
> = {
  'ml-kem-768': { kemId: 0x0041, enc: 1088, publicKey: 1184, privateKey: 64, tag: 16 },
  'x-wing': { kemId: 0x647a, enc: 1120, publicKey: 1216, privateKey: 32, tag: 16 },
};

/** `info` and `aad` are bound but not secret; both bounded so a caller cannot make us hash megabytes. */
const MAX_INFO = 1024;
const MAX_AAD = 64 * 1024;

/** A recipient key loaded once (seed expanded) for repeated opens; from `SealedBoxes.loadRecipientKey`. */
export type SealedBoxRecipientKey = EngineHpkeKey;

function ab(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/** Sealed boxes on one engine (it must keygen from seed: private keys arrive as seeds). */
export class SealedBoxes {
  readonly #kems: Record<SealedBoxKem, EngineHpkeKem>;
  readonly #suites: Record<SealedBoxKem, CipherSuite>;

  constructor(engine: PqcEngine) {
    if (!engine.capabilities.keygenFromSeed) {
      throw new KbError('FAILED_PRECONDITION', `engine ${engine.name} cannot expand sealed-box seeds`);
    }
    const kem = (k: SealedBoxKem): EngineHpkeKem => new EngineHpkeKem(k, engine);
    this.#kems = { 'ml-kem-768': kem('ml-kem-768'), 'x-wing': kem('x-wing') };
    const suite = (k: SealedBoxKem): CipherSuite =>
      new CipherSuite({ kem: this.#kems[k], kdf: new NodeHkdfSha256(), aead: new NodeAes256Gcm() });
    this.#suites = { 'ml-kem-768': suite('ml-kem-768'), 'x-wing': suite('x-wing') };
  }

  loadRecipientKey(kem: SealedBoxKem, seed: Uint8Array): SealedBoxRecipientKey {
    assertOneOf('kem', kem, SEALED_BOX_KEMS);
    return this.#kems[kem].loadPrivateKey(
      assertBytes('recipientPrivateKey', seed, SEALED_BOX_LENGTHS[kem].privateKey),
    );
  }

  /** Encrypt `plaintext` to `recipientPublicKey`; anyone holding the public key can seal. */
  async seal(
    kem: SealedBoxKem,
    recipientPublicKey: Uint8Array,
    plaintext: Uint8Array,
    info: Uint8Array = new Uint8Array(0),
    aad: Uint8Array = new Uint8Array(0),
  ): Promise<Uint8Array> {
    assertOneOf('kem', kem, SEALED_BOX_KEMS);
    const len = SEALED_BOX_LENGTHS[kem];
    assertBytes('recipientPublicKey', recipientPublicKey, len.publicKey);
    assertBytes('plaintext', plaintext, { max: MAX_MESSAGE_BYTES });
    assertBytes('info', info, { max: MAX_INFO });
    assertBytes('aad', aad, { max: MAX_AAD });
    const suite = this.#suites[kem];
    const pk = await suite.kem.importKey('raw', ab(recipientPublicKey), true);
    let sender;
    try {
      sender = await suite.createSenderContext({ recipientPublicKey: pk, info: ab(info) });
    } catch (cause) {
      // Our KEM throws KbError INVALID_ARGUMENT for a key failing the FIPS 203 modulus check.
      throw new KbError('INVALID_ARGUMENT', 'recipientPublicKey is not a valid key', { cause });
    }
    const ct = new Uint8Array(await sender.seal(ab(plaintext), ab(aad)));
    const enc = new Uint8Array(sender.enc);
    const out = new Uint8Array(enc.length + ct.length);
    out.set(enc, 0);
    out.set(ct, enc.length);
    return out;
  }

  /** Open a sealed box with the recipient's seed or loaded key. Every failure is DECRYPTION_FAILED. */
  async open(
    kem: SealedBoxKem,
    recipientKey: Uint8Array | SealedBoxRecipientKey,
    sealed: Uint8Array,
    info: Uint8Array = new Uint8Array(0),
    aad: Uint8Array = new Uint8Array(0),
  ): Promise<Uint8Array> {
    assertOneOf('kem', kem, SEALED_BOX_KEMS);
    const own = !(recipientKey instanceof EngineHpkeKey);
    const key = own ? this.loadRecipientKey(kem, recipientKey) : recipientKey;
    try {
      return await this.#open(kem, key, sealed, info, aad);
    } finally {
      // A key loaded here from a seed is ours: zero its seed copy and free it.
      if (own) key.destroy();
    }
  }

  async #open(
    kem: SealedBoxKem,
    key: SealedBoxRecipientKey,
    sealed: Uint8Array,
    info: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const len = SEALED_BOX_LENGTHS[kem];
    if (key.algorithm.name !== kem) throw decryptionFailed();
    assertBytes('sealed', sealed, { max: MAX_MESSAGE_BYTES + len.enc + len.tag });
    assertBytes('info', info, { max: MAX_INFO });
    assertBytes('aad', aad, { max: MAX_AAD });
    if (sealed.length < len.enc + len.tag) throw decryptionFailed();
    try {
      const recipient = await this.#suites[kem].createRecipientContext({
        recipientKey: key as never,
        enc: ab(sealed.subarray(0, len.enc)),
        info: ab(info),
      });
      return new Uint8Array(await recipient.open(ab(sealed.subarray(len.enc)), ab(aad)));
    } catch (cause) {
      throw decryptionFailed(cause);
    }
  }
}

let defaultBoxes: SealedBoxes | undefined;
function boxes(): SealedBoxes {
  defaultBoxes ??= new SealedBoxes(new OpenSslEngine());
  return defaultBoxes;
}

/** `SealedBoxes.seal` on the default OpenSSL engine. */
export function sealBox(
  kem: SealedBoxKem,
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  info?: Uint8Array,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  return boxes().seal(kem, recipientPublicKey, plaintext, info, aad);
}

/** `SealedBoxes.open` on the default OpenSSL engine. */
export function openBox(
  kem: SealedBoxKem,
  recipientKey: Uint8Array | SealedBoxRecipientKey,
  sealed: Uint8Array,
  info?: Uint8Array,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  return boxes().open(kem, recipientKey, sealed, info, aad);
}
