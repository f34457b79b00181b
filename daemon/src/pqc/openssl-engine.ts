/**
 * PqcEngine on OpenSSL 3.5 through Node's crypto: ML-KEM via crypto.encapsulate/decapsulate,
 * ML-DSA via crypto.sign/verify(null, msg, { key, context }). Keys come from seeds (`raw-seed`)
 * or from the expanded FIPS encoding wrapped in PKCS#8 (the form liboqs interoperates with).
 * OpenSSL checks FIPS 203 §7.2/§7.3 key validity on import and zeroes key material on free;
 * KeyObjects cannot be zeroed from JavaScript, so `destroy` drops the reference.
 */
import {
  createPrivateKey,
  createPublicKey,
  decapsulate,
  encapsulate,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import { assertBytes, assertCount, assertOneOf } from './pqc-assert.ts';
import { TAG, parsePqcPkcs8, pkcs8, tlv } from './pqc-der.ts';
import {
  MAX_ENCAPSULATIONS,
  type EngineCapabilities,
  type Encapsulation,
  type PqcEngine,
  type PqcKeyPair,
  type PqcPrivateKey,
  type PrivateKeyForm,
} from './pqc-engine.ts';
import {
  KEM_ALGORITHMS,
  KEM_LENGTHS,
  PQC_OIDS,
  SIG_ALGORITHMS,
  SIG_LENGTHS,
  isKemAlgorithm,
  type KemAlgorithm,
  type PqcAlgorithm,
  type SigAlgorithm,
} from './pqc-params.ts';
import { PublicKeyCache } from './public-key-cache.ts';

const ALL = [...KEM_ALGORITHMS, ...SIG_ALGORITHMS] as const;

function lengthsOf(alg: PqcAlgorithm): { seed: number; publicKey: number; secretKey: number } {
  return isKemAlgorithm(alg) ? KEM_LENGTHS[alg] : SIG_LENGTHS[alg];
}

function toU8(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function encapsulateOnce(pk: KeyObject): Encapsulation {
  const { sharedKey, ciphertext } = encapsulate(pk);
  return { cipherText: toU8(ciphertext), sharedSecret: toU8(sharedKey) };
}

class OpenSslPrivateKey implements PqcPrivateKey {
  readonly alg: PqcAlgorithm;
  readonly engine = 'openssl' as const;
  readonly publicKey: Uint8Array;
  #key: KeyObject | undefined;

  constructor(alg: PqcAlgorithm, key: KeyObject, publicKey: Uint8Array) {
    this.alg = alg;
    this.#key = key;
    this.publicKey = publicKey;
  }

  keyObject(): KeyObject {
    if (this.#key === undefined) throw new KbError('FAILED_PRECONDITION', 'private key was destroyed');
    return this.#key;
  }

  destroy(): void {
    this.#key = undefined;
  }
}

export class OpenSslEngine implements PqcEngine {
  readonly name = 'openssl' as const;
  readonly capabilities: EngineCapabilities = {
    kem: KEM_ALGORITHMS,
    sig: SIG_ALGORITHMS,
    keygenFromSeed: true,
    signContext: true,
    notes: [
      'ML-KEM encapsulation randomness and ML-DSA signing randomness cannot be injected (no derandomized API)',
    ],
  };
  readonly #publicKeys = new PublicKeyCache<KeyObject>();

  generateKeyPair(alg: PqcAlgorithm, seed?: Uint8Array): PqcKeyPair {
    assertOneOf('alg', alg, ALL);
    const len = lengthsOf(alg);
    const s =
      seed === undefined
        ? crypto.getRandomValues(new Uint8Array(len.seed))
        : Uint8Array.from(assertBytes('seed', seed, len.seed));
    const key = this.#importSeed(alg, s);
    const der = toU8(key.export({ format: 'der', type: 'pkcs8' }));
    const { expanded } = parsePqcPkcs8(der, PQC_OIDS[alg]);
    if (expanded === undefined)
      throw new KbError('INTERNAL', undefined, { detail: 'OpenSSL exported no expanded key' });
    const secretKey = SecretBytes.copyOf(expanded);
    der.fill(0);
    const publicKey = toU8(createPublicKey(key).export({ format: 'raw-public' }));
    return { alg, publicKey, secretKey, seed: new SecretBytes(s) };
  }

  loadPrivateKey(
    alg: PqcAlgorithm,
    form: PrivateKeyForm,
    bytes: Uint8Array,
    publicKey?: Uint8Array,
  ): PqcPrivateKey {
    assertOneOf('alg', alg, ALL);
    assertOneOf('form', form, ['seed', 'expanded'] as const);
    const len = lengthsOf(alg);
    let key: KeyObject;
    if (form === 'seed') {
      key = this.#importSeed(alg, assertBytes('seed', bytes, len.seed));
    } else {
      assertBytes('secretKey', bytes, len.secretKey);
      const der = pkcs8(PQC_OIDS[alg], tlv(TAG.OCTET_STRING, bytes));
      try {
        key = createPrivateKey({
          key: Buffer.from(der.buffer, der.byteOffset, der.byteLength),
          format: 'der',
          type: 'pkcs8',
        });
      } catch (cause) {
        // OpenSSL rejects an expanded key whose embedded hash or public key does not match.
        throw new KbError('INVALID_ARGUMENT', 'secretKey is not a valid expanded key', { cause });
      } finally {
        der.fill(0);
      }
    }
    const derived = toU8(createPublicKey(key).export({ format: 'raw-public' }));
    if (publicKey !== undefined) {
      assertBytes('publicKey', publicKey, len.publicKey);
      if (!Buffer.from(derived).equals(Buffer.from(publicKey))) {
        throw new KbError('INVALID_ARGUMENT', 'publicKey does not match the private key');
      }
    }
    return new OpenSslPrivateKey(alg, key, derived);
  }

  encapsulate(alg: KemAlgorithm, publicKey: Uint8Array): Encapsulation {
    assertOneOf('alg', alg, KEM_ALGORITHMS);
    const pk = this.#publicKey(alg, assertBytes('publicKey', publicKey, KEM_LENGTHS[alg].publicKey));
    return encapsulateOnce(pk);
  }

  encapsulateMany(alg: KemAlgorithm, publicKey: Uint8Array, count: number): Encapsulation[] {
    assertOneOf('alg', alg, KEM_ALGORITHMS);
    const n = assertCount('count', count, MAX_ENCAPSULATIONS);
    const pk = this.#publicKey(alg, assertBytes('publicKey', publicKey, KEM_LENGTHS[alg].publicKey));
    const out: Encapsulation[] = [];
    for (let i = 0; i < n; i++) out.push(encapsulateOnce(pk));
    return out;
  }

  decapsulate(key: PqcPrivateKey, cipherText: Uint8Array): Uint8Array {
    const k = this.#own(key);
    if (!isKemAlgorithm(k.alg))
      throw new KbError('INVALID_ARGUMENT', `key must be an ML-KEM key, got ${k.alg}`);
    assertBytes('cipherText', cipherText, KEM_LENGTHS[k.alg].cipherText);
    return toU8(decapsulate(k.keyObject(), cipherText));
  }

  sign(key: PqcPrivateKey, message: Uint8Array, context?: Uint8Array): Uint8Array {
    const k = this.#own(key);
    if (isKemAlgorithm(k.alg))
      throw new KbError('INVALID_ARGUMENT', `key must be an ML-DSA key, got ${k.alg}`);
    assertBytes('message', message);
    const ctx = context === undefined ? undefined : assertBytes('context', context, { max: 255 });
    // The bare KeyObject when there is no context: Node tells an options object from a KeyObject
    // by catching two exceptions, about a tenth of an ML-DSA-65 verify inside the daemon.
    const opts = ctx === undefined || ctx.length === 0 ? k.keyObject() : { key: k.keyObject(), context: ctx };
    return toU8(sign(null, message, opts));
  }

  verify(
    alg: SigAlgorithm,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context?: Uint8Array,
  ): boolean {
    assertOneOf('alg', alg, SIG_ALGORITHMS);
    const pk = this.#publicKey(alg, assertBytes('publicKey', publicKey, SIG_LENGTHS[alg].publicKey));
    assertBytes('message', message);
    assertBytes('signature', signature, { max: 64 * 1024 });
    const ctx = context === undefined ? undefined : assertBytes('context', context, { max: 255 });
    if (signature.length !== SIG_LENGTHS[alg].signature) return false;
    const opts = ctx === undefined || ctx.length === 0 ? pk : { key: pk, context: ctx };
    return verify(null, message, opts, signature);
  }

  #importSeed(alg: PqcAlgorithm, seed: Uint8Array): KeyObject {
    return createPrivateKey({
      key: Buffer.from(seed.buffer, seed.byteOffset, seed.byteLength),
      format: 'raw-seed',
      asymmetricKeyType: alg,
    });
  }

  #publicKey(alg: PqcAlgorithm, raw: Uint8Array): KeyObject {
    return this.#publicKeys.get(alg, raw, () => {
      try {
        return createPublicKey({
          key: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength),
          format: 'raw-public',
          asymmetricKeyType: alg,
        });
      } catch (cause) {
        // FIPS 203 §7.2 modulus check (and ML-DSA decoding) failures land here.
        throw new KbError('INVALID_ARGUMENT', 'publicKey is not a valid encoded key', { cause });
      }
    });
  }

  #own(key: PqcPrivateKey): OpenSslPrivateKey {
    if (!(key instanceof OpenSslPrivateKey)) {
      throw new KbError('INVALID_ARGUMENT', 'key was not loaded by the openssl engine');
    }
    return key;
  }
}
