/**
 * Private key material of tenant asymmetric keys: what is generated, what is stored (wrapped under
 * the TEK), and the loaded form used by operations. Stored forms ("secret"):
 *   ml-kem-768/1024  64-byte seed d ‖ z (FIPS 203)      ml-dsa-44/65/87  32-byte seed ξ (FIPS 204)
 *   x-wing           32-byte seed (draft-08)              ed25519          32-byte seed (RFC 8032)
 *   composite        32-byte ML-DSA-65 seed ‖ ECPrivateKey DER (draft-ietf-lamps-pq-composite-sigs-19
 *                    SerializePrivateKey), or seed ‖ "hsm:" ‖ label when the ECDSA half is in the HSM
 *   ecdsa-p256       "hsm:" ‖ label of a non-extractable token key (Hsm.generateSigningKey)
 * The HSM label is wrapped too so that a row edited in the file cannot point at another key.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { KbError, decryptionFailed } from '../errors.ts';
import type { Hsm, HsmKeyRef } from '../hsm/hsm.ts';
import {
  ecdsaP256PublicKey,
  ecdsaP256RawPublicKey,
  ed25519GenerateKeyPair,
  ed25519PrivateKey,
  ed25519PublicKey,
  hsmEcdsaP256Signer,
  type EcdsaP256Signer,
} from '../pqc/classical-signatures.ts';
import {
  CompositeMlDsa65EcdsaP256,
  compositePublicKey,
  generateCompositeKeyPair,
  loadCompositePrivateKey,
} from '../pqc/composite-mldsa65-ecdsa-p256.ts';
import { SealedBoxes, type SealedBoxRecipientKey } from '../pqc/hpke-sealed-box.ts';
import type { EngineName, PqcEngine, PqcKeyPair, PqcPrivateKey } from '../pqc/pqc-engine.ts';
import type { KemAlgorithm, PqcAlgorithm, SigAlgorithm } from '../pqc/pqc-params.ts';
import { workerKeyId } from '../pqc/pqc-worker-protocol.ts';
import type { PqcRouter } from '../pqc/pqc-router.ts';
import type { PqcWorkerPool } from '../pqc/pqc-worker-pool.ts';
import { XWing, type XWingPrivateKey } from '../pqc/xwing.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';

const HSM_PREFIX = new TextEncoder().encode('hsm:');
const SOME_CONTEXT = Uint8Array.of(1);

/** The engines, routing and pool the asymmetric keys run on (built once at start). */
export class AsymmetricRuntime {
  readonly router: PqcRouter;
  readonly pool: PqcWorkerPool | undefined;
  readonly openssl: PqcEngine;
  readonly xwing: XWing;
  readonly boxes: SealedBoxes;
  readonly composite: CompositeMlDsa65EcdsaP256;

  constructor(router: PqcRouter, pool?: PqcWorkerPool) {
    this.router = router;
    this.pool = pool;
    this.openssl = router.engine('openssl');
    this.xwing = new XWing(this.openssl, router.engineFor('kem.decapsulate'));
    this.boxes = new SealedBoxes(this.openssl);
    // The composite's ML-DSA half signs with ctx = Label, so it needs a context-capable engine.
    this.composite = new CompositeMlDsa65EcdsaP256(router.engineFor('sig.sign', SOME_CONTEXT));
  }

  /** Key generation for `alg`, on the pool when configured (keygen is CPU-heavy). */
  async keygen(alg: KemAlgorithm | SigAlgorithm): Promise<PqcKeyPair> {
    const op = alg.startsWith('ml-kem') ? 'kem.keygen' : 'sig.keygen';
    if (this.pool !== undefined && this.router.offloaded(op))
      return this.pool.generateKeyPair(this.router.engineFor(op).name, alg);
    return this.router.engineFor(op).generateKeyPair(alg);
  }

  /** X-Wing and composite keygen go to the pool when keygen is offloaded (either kind). */
  hybridKeygenOffloaded(): boolean {
    return (
      this.pool !== undefined && (this.router.offloaded('kem.keygen') || this.router.offloaded('sig.keygen'))
    );
  }

  /** X-Wing or (software) composite keygen on a worker; the event loop only receives the result. */
  async hybridKeygen(kind: 'x-wing' | 'composite-mldsa65-ecdsa-p256'): Promise<GeneratedKey> {
    if (this.pool === undefined) throw new KbError('INTERNAL', undefined, { detail: 'no worker pool' });
    const r = await this.pool.generateHybridKey(kind);
    return { secret: r.secret, publicKey: r.publicKey };
  }
}

/** A freshly generated key: what to wrap, the public key, and a label of an HSM half. */
export interface GeneratedKey {
  readonly secret: SecretBytes;
  readonly publicKey: Uint8Array;
  readonly hsmLabel?: string;
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const o = new Uint8Array(a.length + b.length);
  o.set(a, 0);
  o.set(b, a.length);
  return o;
};

function seedOf(kp: PqcKeyPair): SecretBytes {
  kp.secretKey.destroy();
  if (kp.seed === undefined) throw new KbError('INTERNAL', undefined, { detail: 'keygen returned no seed' });
  return kp.seed;
}

/** A new label for a token key; random so that nothing about the tenant shows in the HSM. */
function newHsmLabel(): string {
  return `kb-ak-${randomBytes(12).toString('hex')}`;
}

async function hsmP256(hsm: Hsm, label: string): Promise<Uint8Array> {
  const { spki } = await hsm.generateSigningKey(label, 'ecdsa-p256');
  return ecdsaP256RawPublicKey(ecdsaP256PublicKey(spki));
}

/** Generate a key of `type`. `hsmEcdsa` puts a composite's ECDSA half in the HSM. */
export async function generateKey(
  rt: AsymmetricRuntime,
  hsm: Hsm,
  type: AsymmetricKeyType,
  hsmEcdsa: boolean,
): Promise<GeneratedKey> {
  switch (type) {
    case 'ml-kem-768':
    case 'ml-kem-1024':
    case 'ml-dsa-44':
    case 'ml-dsa-65':
    case 'ml-dsa-87': {
      const kp = await rt.keygen(type);
      return { secret: seedOf(kp), publicKey: kp.publicKey };
    }
    case 'x-wing': {
      if (rt.hybridKeygenOffloaded()) return rt.hybridKeygen('x-wing');
      const kp = rt.xwing.generateKeyPair();
      return { secret: kp.seed, publicKey: kp.publicKey };
    }
    case 'ed25519': {
      const kp = ed25519GenerateKeyPair();
      return { secret: kp.seed, publicKey: kp.publicKey };
    }
    case 'ecdsa-p256': {
      const label = newHsmLabel();
      const publicKey = await hsmP256(hsm, label);
      return {
        secret: new SecretBytes(concat(HSM_PREFIX, new TextEncoder().encode(label))),
        publicKey,
        hsmLabel: label,
      };
    }
    case 'composite-mldsa65-ecdsa-p256': {
      if (!hsmEcdsa) {
        if (rt.hybridKeygenOffloaded()) return rt.hybridKeygen('composite-mldsa65-ecdsa-p256');
        const kp = generateCompositeKeyPair(rt.openssl);
        return { secret: kp.privateKey, publicKey: kp.publicKey };
      }
      // The ML-DSA half on the pool (its public key comes back with it); the ECDSA half in the HSM.
      const ml = await rt.keygen('ml-dsa-65');
      const seed = seedOf(ml);
      const label = newHsmLabel();
      try {
        const ec = await hsmP256(hsm, label);
        const secret = new SecretBytes(
          concat(seed.expose(), concat(HSM_PREFIX, new TextEncoder().encode(label))),
        );
        return { secret, publicKey: compositePublicKey(ml.publicKey, ec), hsmLabel: label };
      } finally {
        seed.destroy();
      }
    }
  }
}

/** A key version loaded for use; owned by the cache, destroyed on eviction. */
export class LoadedKey {
  readonly type: AsymmetricKeyType;
  readonly version: number;
  readonly publicKey: Uint8Array;
  /** The seed (ML-KEM, ML-DSA, composite's ML-DSA half) as sent to the worker pool. */
  readonly seed: SecretBytes | undefined;
  readonly ecdsa: EcdsaP256Signer | undefined;
  readonly ed25519: KeyObject | undefined;
  readonly xwing: XWingPrivateKey | undefined;
  readonly box: SealedBoxRecipientKey | undefined;
  readonly #handles = new Map<EngineName, PqcPrivateKey>();
  #destroyed = false;
  #evicted = false;
  #pins = 0;
  /** Tells the worker pool to drop its copies of this key (see PqcWorkerPool.evictKeys). */
  readonly #onFree: (() => void) | undefined;

  constructor(p: {
    type: AsymmetricKeyType;
    version: number;
    publicKey: Uint8Array;
    seed?: SecretBytes;
    ecdsa?: EcdsaP256Signer;
    ed25519?: KeyObject;
    xwing?: XWingPrivateKey;
    box?: SealedBoxRecipientKey;
    handle?: PqcPrivateKey;
    onFree?: () => void;
  }) {
    this.#onFree = p.onFree;
    this.type = p.type;
    this.version = p.version;
    this.publicKey = p.publicKey;
    this.seed = p.seed;
    this.ecdsa = p.ecdsa;
    this.ed25519 = p.ed25519;
    this.xwing = p.xwing;
    this.box = p.box;
    if (p.handle) this.#handles.set(p.handle.engine, p.handle);
  }

  /** The engine-prepared ML-KEM/ML-DSA key for `op` (loaded on first use per engine). */
  handle(rt: AsymmetricRuntime, op: 'kem.decapsulate' | 'sig.sign', context?: Uint8Array): PqcPrivateKey {
    if (this.#destroyed || this.seed === undefined) throw decryptionFailed();
    const engine = rt.router.engineFor(op, context).name;
    let h = this.#handles.get(engine);
    if (h === undefined) {
      // A composite's handle is its ML-DSA-65 half (the first 1952 bytes of its public key).
      const composite = this.type === 'composite-mldsa65-ecdsa-p256';
      const alg = composite ? 'ml-dsa-65' : (this.type as KemAlgorithm | SigAlgorithm);
      const pk = composite ? this.publicKey.subarray(0, 1952) : this.publicKey;
      h = rt.router.loadPrivateKey(op, alg, this.seed.expose(), pk, context);
      this.#handles.set(engine, h);
    }
    return h;
  }

  /**
   * Run `fn` (which awaits while using this key, e.g. an HPKE open) with the key pinned: a cache
   * eviction meanwhile defers the destruction until `fn` settles instead of failing it midway.
   */
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#destroyed) throw decryptionFailed();
    this.#pins++;
    try {
      return await fn();
    } finally {
      this.#pins--;
      if (this.#evicted && this.#pins === 0) this.#free();
    }
  }

  /** Called by the cache on eviction; frees now, or when the last `use` settles. */
  destroy(): void {
    this.#evicted = true;
    if (this.#pins === 0) this.#free();
    else if (this.#freed === undefined) {
      // Evicted while an operation still uses it: freed when that settles (see draining()).
      this.#freed = new Promise<void>((r) => (this.#resolveFreed = r));
      LoadedKey.#draining.add(this.#freed);
      void this.#freed.then(() => LoadedKey.#draining.delete(this.#freed as Promise<void>));
    }
  }

  /** Keys evicted while in use, freed once their operation settles: a shred waits for them. */
  static draining(): Promise<void> {
    return Promise.all([...LoadedKey.#draining]).then(() => undefined);
  }

  static readonly #draining = new Set<Promise<void>>();
  #freed: Promise<void> | undefined;
  #resolveFreed: (() => void) | undefined;

  #free(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#resolveFreed?.();
    this.seed?.destroy();
    for (const h of this.#handles.values()) h.destroy();
    this.#handles.clear();
    this.xwing?.destroy();
    // The sealed-box key holds its own seed copy (EngineHpkeKey.raw): zeroed with the rest.
    this.box?.destroy();
    this.#onFree?.();
  }
}

function hsmLabelOf(bytes: Uint8Array): string {
  if (bytes.length <= HSM_PREFIX.length || !HSM_PREFIX.every((b, i) => bytes[i] === b))
    throw decryptionFailed();
  return new TextDecoder().decode(bytes.subarray(HSM_PREFIX.length));
}

async function hsmSigner(hsm: Hsm, label: string, expectLabel: string | undefined): Promise<EcdsaP256Signer> {
  if (expectLabel !== label) throw decryptionFailed();
  const ref: HsmKeyRef | undefined = await hsm.findKey(label, 'signing');
  if (ref === undefined) throw decryptionFailed();
  return hsmEcdsaP256Signer(hsm, ref);
}

/**
 * Load an unwrapped secret (consumed: zeroed here) into a LoadedKey, checking that it derives the
 * stored public key (a corrupted or swapped row fails here, as DECRYPTION_FAILED).
 */
export async function loadKey(
  rt: AsymmetricRuntime,
  hsm: Hsm,
  type: AsymmetricKeyType,
  version: number,
  publicKey: Uint8Array,
  secret: Uint8Array,
  hsmLabel: string | undefined,
): Promise<LoadedKey> {
  const same = (a: Uint8Array) => Buffer.from(a).equals(Buffer.from(publicKey));
  const base = { type, version, publicKey };
  // A seed sent to the worker pool is cached there under workerKeyId: evict it with this key.
  const poolCopies = (alg: PqcAlgorithm, seed: Uint8Array) => {
    const pool = rt.pool;
    if (pool === undefined) return {};
    const ids = (['openssl', 'liboqs'] as const).map((e) => workerKeyId(e, alg, 'seed', seed));
    return { onFree: () => void pool.evictKeys(ids) };
  };
  try {
    switch (type) {
      case 'ml-kem-768':
      case 'ml-kem-1024': {
        const seed = SecretBytes.copyOf(secret);
        const handle = rt.router.loadPrivateKey('kem.decapsulate', type, secret, publicKey);
        const box = type === 'ml-kem-768' ? rt.boxes.loadRecipientKey('ml-kem-768', secret) : undefined;
        return new LoadedKey({
          ...base,
          seed,
          handle,
          ...(box ? { box } : {}),
          ...poolCopies(type, secret),
        });
      }
      case 'ml-dsa-44':
      case 'ml-dsa-65':
      case 'ml-dsa-87': {
        // Derive once to check the public key; signing handles load lazily per engine.
        const kp = rt.openssl.generateKeyPair(type, secret);
        kp.secretKey.destroy();
        kp.seed?.destroy();
        if (!same(kp.publicKey)) throw decryptionFailed();
        return new LoadedKey({ ...base, seed: SecretBytes.copyOf(secret), ...poolCopies(type, secret) });
      }
      case 'x-wing': {
        const xwing = rt.xwing.loadPrivateKey(secret, publicKey);
        return new LoadedKey({ ...base, xwing, box: rt.boxes.loadRecipientKey('x-wing', secret) });
      }
      case 'ed25519': {
        const ed = ed25519PrivateKey(secret);
        if (!same(ed25519PublicKey(ed))) throw decryptionFailed();
        return new LoadedKey({ ...base, ed25519: ed });
      }
      case 'ecdsa-p256': {
        const ecdsa = await hsmSigner(hsm, hsmLabelOf(secret), hsmLabel);
        if (!same(ecdsa.publicKey)) throw decryptionFailed();
        return new LoadedKey({ ...base, ecdsa });
      }
      case 'composite-mldsa65-ecdsa-p256': {
        const seedBytes = secret.subarray(0, 32);
        const rest = secret.subarray(32);
        let ecdsa: EcdsaP256Signer;
        let mlPk: Uint8Array;
        if (hsmLabel !== undefined) {
          ecdsa = await hsmSigner(hsm, hsmLabelOf(rest), hsmLabel);
          const kp = rt.openssl.generateKeyPair('ml-dsa-65', seedBytes);
          kp.secretKey.destroy();
          kp.seed?.destroy();
          mlPk = kp.publicKey;
        } else {
          const c = loadCompositePrivateKey(rt.openssl, secret);
          c.key.mlDsa.destroy();
          ecdsa = c.key.ecdsa;
          mlPk = c.publicKey.subarray(0, 1952);
        }
        if (!same(compositePublicKey(mlPk, ecdsa.publicKey))) throw decryptionFailed();
        return new LoadedKey({
          ...base,
          seed: SecretBytes.copyOf(seedBytes),
          ecdsa,
          ...poolCopies('ml-dsa-65', seedBytes),
        });
      }
    }
  } catch (err) {
    if (err instanceof KbError && (err.code === 'HSM_UNAVAILABLE' || err.code === 'SHUTTING_DOWN')) throw err;
    throw decryptionFailed(err);
  } finally {
    secret.fill(0);
  }
}
