/**
 * X-Wing, the X25519 + ML-KEM-768 hybrid KEM of draft-connolly-cfrg-xwing-kem-08 (its Appendix C
 * test vectors are the three in ../shared/vectors/xwing/, which this code matches).
 *
 *   expanded = SHAKE256(sk, 96); (pk_M, sk_M) = ML-KEM-768.KeyGen_internal(expanded[0:32], expanded[32:64])
 *   sk_X = expanded[64:96]; pk = pk_M ‖ X25519(sk_X, 9)            (1184 + 32 bytes)
 *   ct = ct_M ‖ ct_X                                                (1088 + 32 bytes)
 *   ss = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "\.//^\")
 *
 * ML-KEM runs on a PqcEngine: seeds are expanded by an engine with keygen-from-seed (OpenSSL),
 * encapsulation/decapsulation by the configured engine (either). The private key is the 32-byte
 * seed; like ML-KEM, decapsulation never fails on a well-formed ciphertext.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import { assertBytes } from './pqc-assert.ts';
import type { PqcEngine, PqcPrivateKey } from './pqc-engine.ts';
import { x25519, x25519Ephemeral, x25519PrivateKey, x25519PublicKey } from './x25519.ts';

export const XWING_LENGTHS = { seed: 32, publicKey: 1216, cipherText: 1120, sharedSecret: 32 } as const;
const PK_M = 1184;
const CT_M = 1088;
/** XWingLabel, the ASCII art "\.//^\" (draft §5.3). */
const XWING_LABEL = Uint8Array.of(0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c);

export interface XWingKeyPair {
  readonly publicKey: Uint8Array;
  readonly seed: SecretBytes;
}

/** A loaded X-Wing decapsulation key; destroy when evicted. */
export class XWingPrivateKey {
  readonly publicKey: Uint8Array;
  readonly mlKem: PqcPrivateKey;
  #x25519: KeyObject | undefined;

  constructor(publicKey: Uint8Array, mlKem: PqcPrivateKey, x: KeyObject) {
    this.publicKey = publicKey;
    this.mlKem = mlKem;
    this.#x25519 = x;
  }

  x25519Key(): KeyObject {
    if (this.#x25519 === undefined) throw new KbError('FAILED_PRECONDITION', 'private key was destroyed');
    return this.#x25519;
  }

  destroy(): void {
    this.mlKem.destroy();
    this.#x25519 = undefined;
  }
}

function combine(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array): Uint8Array {
  const h = createHash('sha3-256')
    .update(ssM)
    .update(ssX)
    .update(ctX)
    .update(pkX)
    .update(XWING_LABEL)
    .digest();
  return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
}

export class XWing {
  readonly #expander: PqcEngine;
  readonly #kem: PqcEngine;

  /** `expander` must have keygenFromSeed; `kem` (default: the expander) runs encaps/decaps. */
  constructor(expander: PqcEngine, kem: PqcEngine = expander) {
    if (!expander.capabilities.keygenFromSeed) {
      throw new KbError('FAILED_PRECONDITION', `engine ${expander.name} cannot expand X-Wing seeds`);
    }
    this.#expander = expander;
    this.#kem = kem;
  }

  generateKeyPair(seed?: Uint8Array): XWingKeyPair {
    const sk =
      seed === undefined
        ? crypto.getRandomValues(new Uint8Array(32))
        : Uint8Array.from(assertBytes('seed', seed, 32));
    const key = this.loadPrivateKey(sk);
    const publicKey = key.publicKey;
    key.destroy();
    return { publicKey, seed: new SecretBytes(sk) };
  }

  /** Expand the 32-byte seed into the ML-KEM and X25519 keys (draft §5.2 expandDecapsulationKey). */
  loadPrivateKey(seed: Uint8Array, publicKey?: Uint8Array): XWingPrivateKey {
    assertBytes('seed', seed, 32);
    const expanded = createHash('shake256', { outputLength: 96 }).update(seed).digest();
    try {
      const pair = this.#expander.generateKeyPair('ml-kem-768', expanded.subarray(0, 64));
      const mlKem =
        this.#kem === this.#expander
          ? this.#kem.loadPrivateKey('ml-kem-768', 'seed', pair.seed?.expose() ?? new Uint8Array(0))
          : this.#kem.loadPrivateKey('ml-kem-768', 'expanded', pair.secretKey.expose(), pair.publicKey);
      pair.secretKey.destroy();
      pair.seed?.destroy();
      const x = x25519PrivateKey(expanded.subarray(64, 96));
      const pk = new Uint8Array(XWING_LENGTHS.publicKey);
      pk.set(pair.publicKey, 0);
      pk.set(x25519PublicKey(x), PK_M);
      if (
        publicKey !== undefined &&
        !Buffer.from(pk).equals(Buffer.from(assertBytes('publicKey', publicKey, 1216)))
      ) {
        throw new KbError('INVALID_ARGUMENT', 'publicKey does not match the private key');
      }
      return new XWingPrivateKey(pk, mlKem, x);
    } finally {
      expanded.fill(0);
    }
  }

  encapsulate(publicKey: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
    const pk = assertBytes('publicKey', publicKey, XWING_LENGTHS.publicKey);
    const pkM = pk.subarray(0, PK_M);
    const pkX = pk.subarray(PK_M);
    // The ephemeral scalar ek_X stays inside OpenSSL (a KeyObject), freed and cleansed with it.
    const eph = x25519Ephemeral();
    const ctX = eph.publicKey;
    const ssX = x25519(eph.privateKey, pkX, true);
    const m = this.#kem.encapsulate('ml-kem-768', pkM);
    const cipherText = new Uint8Array(XWING_LENGTHS.cipherText);
    cipherText.set(m.cipherText, 0);
    cipherText.set(ctX, CT_M);
    const sharedSecret = combine(m.sharedSecret, ssX, ctX, pkX);
    m.sharedSecret.fill(0);
    ssX.fill(0);
    return { cipherText, sharedSecret };
  }

  decapsulate(key: XWingPrivateKey, cipherText: Uint8Array): Uint8Array {
    const ct = assertBytes('cipherText', cipherText, XWING_LENGTHS.cipherText);
    const ctX = ct.subarray(CT_M);
    const ssM = this.#kem.decapsulate(key.mlKem, ct.subarray(0, CT_M));
    const ssX = x25519(key.x25519Key(), ctX);
    const ss = combine(ssM, ssX, ctX, key.publicKey.subarray(PK_M));
    ssM.fill(0);
    ssX.fill(0);
    return ss;
  }
}
