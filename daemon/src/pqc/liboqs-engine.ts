/**
 * PqcEngine on liboqs (the Open Quantum Safe project's WebAssembly build, @oqs/liboqs-js).
 * What liboqs-js cannot do, stated in `capabilities`: key generation from a seed (only random
 * keygen is exposed) and ML-DSA context strings (only OQS_SIG_sign, i.e. empty context). It
 * interoperates with OpenSSL through the expanded FIPS encodings. It rejects Node Buffers, so
 * inputs are copied into plain Uint8Arrays. The FIPS 203/204 key checks it does not perform are
 * done here (fips-key-checks.ts) before a key is accepted.
 */
import {
  createMLDSA44,
  createMLDSA65,
  createMLDSA87,
  createMLKEM1024,
  createMLKEM512,
  createMLKEM768,
} from '@oqs/liboqs-js';
import { KbError } from '../errors.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import {
  mlDsaSecretKeyCheck,
  mlKemEmbeddedPublicKey,
  mlKemHashCheck,
  mlKemModulusCheck,
} from './fips-key-checks.ts';
import { assertBytes, assertCount, assertOneOf } from './pqc-assert.ts';
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
  SIG_ALGORITHMS,
  SIG_LENGTHS,
  isKemAlgorithm,
  type KemAlgorithm,
  type PqcAlgorithm,
  type SigAlgorithm,
} from './pqc-params.ts';

interface OqsKem {
  generateKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(publicKey: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;
}
interface OqsSig {
  generateKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array;
  verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean;
}

const ALL = [...KEM_ALGORITHMS, ...SIG_ALGORITHMS] as const;

/** liboqs-js checks `constructor.name === 'Uint8Array'`; a Buffer (or subclass) must be copied. */
function plain(bytes: Uint8Array): Uint8Array {
  return bytes.constructor === Uint8Array ? bytes : Uint8Array.from(bytes);
}

class LiboqsPrivateKey implements PqcPrivateKey {
  readonly alg: PqcAlgorithm;
  readonly engine = 'liboqs' as const;
  readonly publicKey: Uint8Array;
  readonly secret: SecretBytes;

  constructor(alg: PqcAlgorithm, secret: SecretBytes, publicKey: Uint8Array) {
    this.alg = alg;
    this.secret = secret;
    this.publicKey = publicKey;
  }

  destroy(): void {
    this.secret.destroy();
  }
}

export class LiboqsEngine implements PqcEngine {
  readonly name = 'liboqs' as const;
  readonly capabilities: EngineCapabilities = {
    kem: KEM_ALGORITHMS,
    sig: SIG_ALGORITHMS,
    keygenFromSeed: false,
    signContext: false,
    notes: [
      'no key generation from a seed (liboqs-js exposes only OQS_KEM_keypair/OQS_SIG_keypair)',
      'no ML-DSA context strings (liboqs-js exposes only OQS_SIG_sign/verify, empty context)',
      'ML-KEM encapsulation randomness and ML-DSA signing randomness cannot be injected',
    ],
  };
  readonly #kems: Record<KemAlgorithm, OqsKem>;
  readonly #sigs: Record<SigAlgorithm, OqsSig>;

  private constructor(kems: Record<KemAlgorithm, OqsKem>, sigs: Record<SigAlgorithm, OqsSig>) {
    this.#kems = kems;
    this.#sigs = sigs;
  }

  /** Instantiate the WebAssembly modules (one per parameter set). */
  static async create(): Promise<LiboqsEngine> {
    const [k512, k768, k1024, d44, d65, d87] = await Promise.all([
      createMLKEM512(),
      createMLKEM768(),
      createMLKEM1024(),
      createMLDSA44(),
      createMLDSA65(),
      createMLDSA87(),
    ]);
    return new LiboqsEngine(
      { 'ml-kem-512': k512, 'ml-kem-768': k768, 'ml-kem-1024': k1024 },
      { 'ml-dsa-44': d44, 'ml-dsa-65': d65, 'ml-dsa-87': d87 },
    );
  }

  generateKeyPair(alg: PqcAlgorithm, seed?: Uint8Array): PqcKeyPair {
    assertOneOf('alg', alg, ALL);
    if (seed !== undefined) {
      throw new KbError('UNIMPLEMENTED', 'liboqs engine cannot generate keys from a seed');
    }
    const kp = isKemAlgorithm(alg) ? this.#kems[alg].generateKeyPair() : this.#sigs[alg].generateKeyPair();
    return { alg, publicKey: kp.publicKey, secretKey: new SecretBytes(kp.secretKey), seed: undefined };
  }

  loadPrivateKey(
    alg: PqcAlgorithm,
    form: PrivateKeyForm,
    bytes: Uint8Array,
    publicKey?: Uint8Array,
  ): PqcPrivateKey {
    assertOneOf('alg', alg, ALL);
    assertOneOf('form', form, ['seed', 'expanded'] as const);
    if (form === 'seed') {
      throw new KbError('UNIMPLEMENTED', 'liboqs engine cannot expand a seed; load the expanded key');
    }
    if (isKemAlgorithm(alg)) {
      const dk = assertBytes('secretKey', bytes, KEM_LENGTHS[alg].secretKey);
      if (!mlKemHashCheck(alg, dk))
        throw new KbError('INVALID_ARGUMENT', 'secretKey fails the FIPS 203 hash check');
      const ek = Uint8Array.from(mlKemEmbeddedPublicKey(alg, dk));
      if (publicKey !== undefined) {
        assertBytes('publicKey', publicKey, KEM_LENGTHS[alg].publicKey);
        if (!Buffer.from(ek).equals(Buffer.from(publicKey))) {
          throw new KbError('INVALID_ARGUMENT', 'publicKey does not match the private key');
        }
      }
      return new LiboqsPrivateKey(alg, SecretBytes.copyOf(dk), ek);
    }
    const sk = assertBytes('secretKey', bytes, SIG_LENGTHS[alg].secretKey);
    if (publicKey === undefined) {
      throw new KbError('INVALID_ARGUMENT', 'publicKey is required to load an ML-DSA key into liboqs');
    }
    const pk = assertBytes('publicKey', publicKey, SIG_LENGTHS[alg].publicKey);
    if (!mlDsaSecretKeyCheck(alg, sk, pk)) {
      throw new KbError('INVALID_ARGUMENT', 'secretKey is not a valid ML-DSA key for publicKey');
    }
    return new LiboqsPrivateKey(alg, SecretBytes.copyOf(sk), Uint8Array.from(pk));
  }

  encapsulate(alg: KemAlgorithm, publicKey: Uint8Array): Encapsulation {
    return this.encapsulateMany(alg, publicKey, 1)[0] as Encapsulation;
  }

  encapsulateMany(alg: KemAlgorithm, publicKey: Uint8Array, count: number): Encapsulation[] {
    assertOneOf('alg', alg, KEM_ALGORITHMS);
    const n = assertCount('count', count, MAX_ENCAPSULATIONS);
    const ek = assertBytes('publicKey', publicKey, KEM_LENGTHS[alg].publicKey);
    if (!mlKemModulusCheck(alg, ek))
      throw new KbError('INVALID_ARGUMENT', 'publicKey fails the FIPS 203 modulus check');
    const kem = this.#kems[alg];
    const pk = plain(ek);
    const out: Encapsulation[] = [];
    for (let i = 0; i < n; i++) {
      const r = kem.encapsulate(pk);
      out.push({ cipherText: r.ciphertext, sharedSecret: r.sharedSecret });
    }
    return out;
  }

  decapsulate(key: PqcPrivateKey, cipherText: Uint8Array): Uint8Array {
    const k = this.#own(key);
    if (!isKemAlgorithm(k.alg))
      throw new KbError('INVALID_ARGUMENT', `key must be an ML-KEM key, got ${k.alg}`);
    const ct = assertBytes('cipherText', cipherText, KEM_LENGTHS[k.alg].cipherText);
    return this.#kems[k.alg].decapsulate(plain(ct), plain(k.secret.expose()));
  }

  sign(key: PqcPrivateKey, message: Uint8Array, context?: Uint8Array): Uint8Array {
    const k = this.#own(key);
    if (isKemAlgorithm(k.alg))
      throw new KbError('INVALID_ARGUMENT', `key must be an ML-DSA key, got ${k.alg}`);
    assertBytes('message', message);
    this.#checkContext(context);
    return this.#sigs[k.alg].sign(plain(message), plain(k.secret.expose()));
  }

  verify(
    alg: SigAlgorithm,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context?: Uint8Array,
  ): boolean {
    assertOneOf('alg', alg, SIG_ALGORITHMS);
    const pk = assertBytes('publicKey', publicKey, SIG_LENGTHS[alg].publicKey);
    assertBytes('message', message);
    assertBytes('signature', signature, { max: 64 * 1024 });
    this.#checkContext(context);
    if (signature.length !== SIG_LENGTHS[alg].signature) return false;
    return this.#sigs[alg].verify(plain(message), plain(signature), plain(pk));
  }

  /** Never ignore a context: a non-empty one is refused, so the caller routes to another engine. */
  #checkContext(context: Uint8Array | undefined): void {
    if (context === undefined) return;
    assertBytes('context', context, { max: 255 });
    if (context.length > 0) {
      throw new KbError('UNIMPLEMENTED', 'liboqs engine does not support ML-DSA context strings');
    }
  }

  #own(key: PqcPrivateKey): LiboqsPrivateKey {
    if (!(key instanceof LiboqsPrivateKey))
      throw new KbError('INVALID_ARGUMENT', 'key was not loaded by the liboqs engine');
    return key;
  }
}
