/**
 * KEM operations: encapsulation to one stored public key, decapsulation with one loaded key
 * version, and the sealed-box KEMs. One ML-KEM operation costs about as much as the hop to a
 * worker, so batches go to the pool only when it has two or more workers (or routing offloads
 * the operation); otherwise they run on this thread in slices that yield to the event loop.
 */
import { setImmediate } from 'node:timers/promises';
import { KbError, decryptionFailed } from '../errors.ts';
import type { Encapsulation } from '../pqc/pqc-engine.ts';
import { KEM_LENGTHS, type KemAlgorithm } from '../pqc/pqc-params.ts';
import type { BatchItem } from '../pqc/pqc-worker-pool.ts';
import { XWING_LENGTHS } from '../pqc/xwing.ts';
import type { AsymmetricRuntime, LoadedKey } from './asymmetric-key-material.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';

const isMlKem = (t: AsymmetricKeyType): t is KemAlgorithm & AsymmetricKeyType =>
  t === 'ml-kem-768' || t === 'ml-kem-1024';

/** Items run in one event-loop turn on the inline path (~15-60 µs each: at most ~1 ms). */
const INLINE_SLICE = 16;

/** Key types that encapsulate. */
type KemKeyType = (KemAlgorithm & AsymmetricKeyType) | 'x-wing';

/** The KEM of a key type; signature keys do not encapsulate. */
function kemOf(type: AsymmetricKeyType): KemKeyType {
  if (type === 'x-wing' || isMlKem(type)) return type;
  throw new KbError('INVALID_ARGUMENT', `${type} keys do not encapsulate`);
}

/** The pool, when routing sends this encapsulation there (ML-KEM with `kem.encapsulate` offloaded). */
function encapsulationPool(rt: AsymmetricRuntime, kem: KemKeyType) {
  return kem !== 'x-wing' && rt.router.offloaded('kem.encapsulate') ? rt.pool : undefined;
}

/** `count` encapsulations on this thread (synchronous: the engines and X-Wing are). */
function encapsulateHere(
  rt: AsymmetricRuntime,
  kem: KemKeyType,
  publicKey: Uint8Array,
  count: number,
): Encapsulation[] {
  if (kem !== 'x-wing') return rt.router.engineFor('kem.encapsulate').encapsulateMany(kem, publicKey, count);
  const out: Encapsulation[] = [];
  for (let i = 0; i < count; i++) out.push(rt.xwing.encapsulate(publicKey));
  return out;
}

/** Encapsulate to a stored public key, here or on the pool as routing says. */
export async function encapsulateTo(
  rt: AsymmetricRuntime,
  type: AsymmetricKeyType,
  publicKey: Uint8Array,
): Promise<Encapsulation> {
  const kem = kemOf(type);
  const pool = encapsulationPool(rt, kem);
  return pool !== undefined && kem !== 'x-wing'
    ? pool.encapsulate(rt.router.engineFor('kem.encapsulate').name, kem, publicKey)
    : (encapsulateHere(rt, kem, publicKey, 1)[0] as Encapsulation);
}

/** EncapsulateBatch of at least this many ML-KEM items runs on the worker pool (when it has two or more workers). */
export const POOL_ENCAPSULATE_MIN_ITEMS = 8;

/**
 * `count` encapsulations to one stored public key, each with its own randomness. ML-KEM goes to
 * the pool, one share per worker, when routing offloads `kem.encapsulate` or when the pool has
 * two or more workers and the batch is big enough; otherwise it runs here, synchronously within
 * slices that yield to the event loop between them (no promise per item).
 */
export async function encapsulateManyTo(
  rt: AsymmetricRuntime,
  type: AsymmetricKeyType,
  publicKey: Uint8Array,
  count: number,
): Promise<Encapsulation[]> {
  const kem = kemOf(type);
  const pool = rt.pool;
  const split = pool !== undefined && pool.stats.workers >= 2 && count >= POOL_ENCAPSULATE_MIN_ITEMS;
  if (kem !== 'x-wing' && pool !== undefined && (split || encapsulationPool(rt, kem) !== undefined)) {
    const engine = rt.router.engineFor('kem.encapsulate').name;
    const share = Math.ceil(count / Math.max(1, pool.stats.workers));
    const parts: Promise<Encapsulation[]>[] = [];
    for (let s = 0; s < count; s += share)
      parts.push(pool.encapsulateMany(engine, kem, publicKey, Math.min(share, count - s)));
    return (await Promise.all(parts)).flat();
  }
  const out: Encapsulation[] = [];
  for (let s = 0; s < count; s += INLINE_SLICE) {
    if (s > 0) await setImmediate();
    out.push(...encapsulateHere(rt, kem, publicKey, Math.min(INLINE_SLICE, count - s)));
  }
  return out;
}

/** Decapsulate; a ciphertext of the wrong length is the one opaque DECRYPTION_FAILED. */
export async function decapsulateWith(
  rt: AsymmetricRuntime,
  k: LoadedKey,
  cipherText: Uint8Array,
): Promise<Uint8Array> {
  const t = k.type;
  if (t === 'x-wing' && k.xwing !== undefined) {
    if (cipherText.length !== XWING_LENGTHS.cipherText) throw decryptionFailed();
    return rt.xwing.decapsulate(k.xwing, cipherText);
  }
  if (!isMlKem(t)) throw new KbError('INVALID_ARGUMENT', `${t} keys do not decapsulate`);
  if (cipherText.length !== KEM_LENGTHS[t].cipherText) throw decryptionFailed();
  const engine = rt.router.engineFor('kem.decapsulate');
  if (rt.pool !== undefined && rt.router.offloaded('kem.decapsulate') && k.seed !== undefined)
    return rt.pool.decapsulate(
      engine.name,
      t,
      { form: 'seed', bytes: k.seed.expose(), publicKey: k.publicKey },
      cipherText,
    );
  return engine.decapsulate(k.handle(rt, 'kem.decapsulate'), cipherText);
}

/** Decapsulate batches of at least this many ML-KEM items run on the worker pool (when there is one). */
export const POOL_DECAPSULATE_MIN_ITEMS = 8;

/**
 * Decapsulate many ciphertexts with one loaded key; every failure is its item's opaque
 * DECRYPTION_FAILED. Big ML-KEM batches go to the pool, one share per worker, but only when the
 * pool has two or more workers: an ML-KEM decapsulation costs about as much as the hop to a
 * worker and the key import there, so with one worker (one usable core) the batch runs inline,
 * in slices that yield to the event loop between them.
 */
export async function decapsulateManyWith(
  rt: AsymmetricRuntime,
  k: LoadedKey,
  cipherTexts: readonly Uint8Array[],
): Promise<BatchItem<Uint8Array>[]> {
  const t = k.type;
  const pool = rt.pool;
  if (
    !isMlKem(t) ||
    pool === undefined ||
    pool.stats.workers < 2 ||
    k.seed === undefined ||
    cipherTexts.length < POOL_DECAPSULATE_MIN_ITEMS
  ) {
    const results: BatchItem<Uint8Array>[] = [];
    if (
      isMlKem(t) &&
      !(pool !== undefined && rt.router.offloaded('kem.decapsulate') && k.seed !== undefined)
    ) {
      // On this thread the engines decapsulate synchronously: one key handle for the batch and no
      // promise per item (about a tenth of an item's cost at 64 items).
      const engine = rt.router.engineFor('kem.decapsulate');
      const len = KEM_LENGTHS[t].cipherText;
      for (let s = 0; s < cipherTexts.length; s += INLINE_SLICE) {
        if (s > 0) await setImmediate();
        for (const ct of cipherTexts.slice(s, s + INLINE_SLICE)) {
          try {
            if (ct.length !== len) throw decryptionFailed();
            results.push({ ok: true, value: engine.decapsulate(k.handle(rt, 'kem.decapsulate'), ct) });
          } catch (err) {
            results.push({ ok: false, error: decryptionFailed(err) });
          }
        }
      }
      return results;
    }
    for (let s = 0; s < cipherTexts.length; s += INLINE_SLICE) {
      if (s > 0) await setImmediate();
      results.push(
        ...(await Promise.all(
          cipherTexts.slice(s, s + INLINE_SLICE).map((ct) =>
            decapsulateWith(rt, k, ct).then(
              (value): BatchItem<Uint8Array> => ({ ok: true, value }),
              (err: unknown): BatchItem<Uint8Array> => ({ ok: false, error: decryptionFailed(err) }),
            ),
          ),
        )),
      );
    }
    return results;
  }
  const out: BatchItem<Uint8Array>[] = cipherTexts.map(() => ({ ok: false, error: decryptionFailed() }));
  // A wrong length is the opaque error here, never sent (as in decapsulateWith).
  const good = cipherTexts.flatMap((c, i) => (c.length === KEM_LENGTHS[t].cipherText ? [i] : []));
  const engine = rt.router.engineFor('kem.decapsulate').name;
  const key = { form: 'seed' as const, bytes: k.seed.expose(), publicKey: k.publicKey };
  const share = Math.max(1, Math.ceil(good.length / Math.max(1, pool.stats.workers)));
  const parts: Promise<void>[] = [];
  for (let s = 0; s < good.length; s += share) {
    const idx = good.slice(s, s + share);
    parts.push(
      pool
        .decapsulateMany(
          engine,
          t,
          key,
          idx.map((i) => cipherTexts[i] as Uint8Array),
        )
        .then((r) =>
          idx.forEach((i, j) => {
            const x = r[j];
            out[i] =
              x?.ok === true
                ? x
                : { ok: false, error: decryptionFailed(x?.ok === false ? x.error : undefined) };
          }),
        ),
    );
  }
  await Promise.all(parts);
  return out;
}

/** Sealed boxes exist for ML-KEM-768 and X-Wing keys (HPKE KEM ids 0x0041, 0x647a). */
export function boxKem(type: AsymmetricKeyType): 'ml-kem-768' | 'x-wing' {
  if (type === 'ml-kem-768' || type === 'x-wing') return type;
  throw new KbError('INVALID_ARGUMENT', `${type} keys cannot seal or open boxes`);
}
