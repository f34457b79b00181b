/**
 * Signature operations on one loaded key version (sign) or one stored public key (verify).
 * ML-DSA signing (also the ML-DSA half of a composite) goes to the worker pool when routing
 * offloads `sig.sign`; everything else runs where the router says. KEM operations:
 * asymmetric-kem-ops.ts.
 */
import { setImmediate } from 'node:timers/promises';
import { KbError } from '../errors.ts';
import { ecdsaP256Verify, ed25519Sign, ed25519Verify } from '../pqc/classical-signatures.ts';
import {
  COMPOSITE_LABEL,
  compositeMessageRepresentative,
  compositeSignature,
} from '../pqc/composite-mldsa65-ecdsa-p256.ts';
import { toDerEcdsaSignature } from '../pqc/ecdsa-encoding.ts';
import { SIG_LENGTHS, type SigAlgorithm } from '../pqc/pqc-params.ts';
import type { BatchItem } from '../pqc/pqc-worker-pool.ts';
import type { AsymmetricRuntime, LoadedKey } from './asymmetric-key-material.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';

const isMlDsa = (t: AsymmetricKeyType): t is SigAlgorithm =>
  t === 'ml-dsa-44' || t === 'ml-dsa-65' || t === 'ml-dsa-87';
const ctxOrUndefined = (c: Uint8Array): Uint8Array | undefined => (c.length === 0 ? undefined : c);

/** Context strings exist for ML-DSA and composite only; FIPS 204 caps them at 255 bytes. */
export function checkContext(type: AsymmetricKeyType, context: Uint8Array): void {
  if (context.length === 0) return;
  if (!isMlDsa(type) && type !== 'composite-mldsa65-ecdsa-p256')
    throw new KbError('INVALID_ARGUMENT', `context is not supported by ${type} keys`);
  if (context.length > 255) throw new KbError('INVALID_ARGUMENT', 'context exceeds 255 bytes');
}

/** The HSM signs messages of at most 64 KiB (pkcs11-hsm.ts); other keys take the API's bound. */
export function checkMessage(type: AsymmetricKeyType, message: Uint8Array): void {
  if (type === 'ecdsa-p256' && message.length > 64 * 1024)
    throw new KbError('TOO_LARGE', 'message exceeds 65536 bytes for HSM keys');
}

function offloadSign(rt: AsymmetricRuntime): boolean {
  return rt.pool !== undefined && rt.router.offloaded('sig.sign');
}

async function mlDsaSign(
  rt: AsymmetricRuntime,
  k: LoadedKey,
  alg: SigAlgorithm,
  message: Uint8Array,
  context: Uint8Array | undefined,
): Promise<Uint8Array> {
  if (offloadSign(rt) && rt.pool !== undefined && k.seed !== undefined) {
    const engine = rt.router.engineFor('sig.sign', context).name;
    return rt.pool.sign(
      engine,
      alg,
      { form: 'seed', bytes: k.seed.expose(), publicKey: mlPublic(k) },
      message,
      context,
    );
  }
  const handle = k.handle(rt, 'sig.sign', context);
  return rt.router.engineFor('sig.sign', context).sign(handle, message, context);
}

/** The ML-DSA public key of a plain ML-DSA key or of a composite's first half. */
function mlPublic(k: LoadedKey): Uint8Array {
  return k.type === 'composite-mldsa65-ecdsa-p256'
    ? k.publicKey.subarray(0, SIG_LENGTHS['ml-dsa-65'].publicKey)
    : k.publicKey;
}

/** Sign with a loaded key (the caller checked purpose and context). */
export async function signWith(
  rt: AsymmetricRuntime,
  k: LoadedKey,
  message: Uint8Array,
  context: Uint8Array,
): Promise<Uint8Array> {
  const t = k.type;
  if (isMlDsa(t)) return mlDsaSign(rt, k, t, message, ctxOrUndefined(context));
  if (t === 'ed25519' && k.ed25519 !== undefined) return ed25519Sign(k.ed25519, message);
  if (t === 'ecdsa-p256' && k.ecdsa !== undefined) return toDerEcdsaSignature(await k.ecdsa.sign(message));
  if (t === 'composite-mldsa65-ecdsa-p256' && k.ecdsa !== undefined) {
    const mPrime = compositeMessageRepresentative(message, context);
    // Both halves always run (the draft: do not reveal which component failed).
    const [ml, ec] = await Promise.all([
      mlDsaSign(rt, k, 'ml-dsa-65', mPrime, COMPOSITE_LABEL),
      k.ecdsa.sign(mPrime),
    ]);
    return compositeSignature(ml, ec);
  }
  throw new KbError('INVALID_ARGUMENT', `${t} keys do not sign`);
}

/** Sign many messages: ML-DSA on the pool, one share per worker; else one by one. */
export async function signManyWith(
  rt: AsymmetricRuntime,
  k: LoadedKey,
  messages: readonly Uint8Array[],
  context: Uint8Array,
): Promise<BatchItem<Uint8Array>[]> {
  const t = k.type;
  if (isMlDsa(t) && offloadSign(rt) && rt.pool !== undefined && k.seed !== undefined) {
    const ctx = ctxOrUndefined(context);
    const engine = rt.router.engineFor('sig.sign', ctx).name;
    const pool = rt.pool;
    const key = { form: 'seed' as const, bytes: k.seed.expose(), publicKey: k.publicKey };
    // One share per worker, so one batch uses every core (a worker signs its share in one go).
    const share = Math.max(1, Math.ceil(messages.length / Math.max(1, pool.stats.workers)));
    const parts: Promise<BatchItem<Uint8Array>[]>[] = [];
    for (let i = 0; i < messages.length; i += share)
      parts.push(pool.signMany(engine, t, key, messages.slice(i, i + share), ctx));
    return (await Promise.all(parts)).flat();
  }
  return Promise.all(
    messages.map((m) =>
      signWith(rt, k, m, context).then(
        (value): BatchItem<Uint8Array> => ({ ok: true, value }),
        (err: unknown): BatchItem<Uint8Array> => {
          if (err instanceof KbError && err.isUserError) return { ok: false, error: err };
          throw err;
        },
      ),
    ),
  );
}

/** Verify against a stored public key; false for any invalid or malformed signature. */
export function verifyWith(
  rt: AsymmetricRuntime,
  type: AsymmetricKeyType,
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  context: Uint8Array,
): boolean {
  if (isMlDsa(type)) {
    if (signature.length !== SIG_LENGTHS[type].signature) return false;
    return rt.router.verify(type, publicKey, message, signature, ctxOrUndefined(context));
  }
  switch (type) {
    case 'ed25519':
      return ed25519Verify(publicKey, message, signature);
    case 'ecdsa-p256':
      return ecdsaP256Verify(publicKey, message, signature, 'der');
    case 'composite-mldsa65-ecdsa-p256':
      return rt.composite.verify(publicKey, message, signature, context);
    default:
      throw new KbError('INVALID_ARGUMENT', `${type} keys do not verify signatures`);
  }
}

/** Verify batches of at least this many ML-DSA items run on the worker pool (two or more workers). */
export const POOL_VERIFY_MIN_ITEMS = 8;
/** How long an inline batch holds the event loop before it yields (ML-DSA-65 verify: ~0.3 ms an item). */
const INLINE_TURN_MS = 1;

/** Whether a batch of `n` verifications of `type` goes to the worker pool rather than inline. */
export function verifyOnPool(rt: AsymmetricRuntime, type: AsymmetricKeyType, n: number): boolean {
  // With one worker (one usable core) the hop buys no parallelism and costs about a quarter of an
  // ML-DSA-65 verify per item (the public key and signature cloned, the worker's own bookkeeping).
  return rt.pool !== undefined && rt.pool.stats.workers >= 2 && isMlDsa(type) && n >= POOL_VERIFY_MIN_ITEMS;
}

/**
 * Verify many signatures on this thread: candidates newest first, an item takes the first version
 * that verifies (as verifyManyOnPool). A long batch yields to the event loop about every
 * millisecond, so other calls keep being served while it runs.
 */
export async function verifyManyInline(
  rt: AsymmetricRuntime,
  candidates: readonly { type: AsymmetricKeyType; version: number; publicKey: Uint8Array }[],
  items: readonly { message: Uint8Array; signature: Uint8Array }[],
  context: Uint8Array,
): Promise<BatchItem<{ valid: boolean; version: number }>[]> {
  const out: BatchItem<{ valid: boolean; version: number }>[] = [];
  let turn = performance.now();
  for (const it of items) {
    if (performance.now() - turn > INLINE_TURN_MS) {
      await setImmediate();
      turn = performance.now();
    }
    try {
      const c = candidates.find((v) =>
        verifyWith(rt, v.type, v.publicKey, it.message, it.signature, context),
      );
      out.push({
        ok: true,
        value: c === undefined ? { valid: false, version: 0 } : { valid: true, version: c.version },
      });
    } catch (err) {
      if (!(err instanceof KbError && err.isUserError)) throw err;
      out.push({ ok: false, error: err });
    }
  }
  return out;
}

/**
 * Verify many signatures of one ML-DSA key on the worker pool, split across its workers so a big
 * batch neither blocks the event loop nor stays on one core. Candidates are tried newest first;
 * an item takes the first version that verifies. Same results as verifyWith item by item.
 */
export async function verifyManyOnPool(
  rt: AsymmetricRuntime,
  candidates: readonly { type: AsymmetricKeyType; version: number; publicKey: Uint8Array }[],
  items: readonly { message: Uint8Array; signature: Uint8Array }[],
  context: Uint8Array,
): Promise<BatchItem<{ valid: boolean; version: number }>[]> {
  const pool = rt.pool;
  const first = candidates[0];
  if (pool === undefined || first === undefined || !isMlDsa(first.type))
    throw new KbError('INTERNAL', undefined, { detail: 'verifyManyOnPool needs a pool and ML-DSA' });
  const alg = first.type;
  const ctx = ctxOrUndefined(context);
  const engine = rt.router.engineFor('sig.verify', ctx).name;
  const out: BatchItem<{ valid: boolean; version: number }>[] = items.map(() => ({
    ok: true,
    value: { valid: false, version: 0 },
  }));
  // A signature of the wrong length is simply invalid (as in verifyWith): never sent.
  let pending = items.flatMap((it, i) => (it.signature.length === SIG_LENGTHS[alg].signature ? [i] : []));
  const share = Math.ceil(pending.length / Math.max(1, pool.stats.workers));
  for (const c of candidates) {
    if (pending.length === 0) break;
    const chunks: number[][] = [];
    for (let i = 0; i < pending.length; i += share) chunks.push(pending.slice(i, i + share));
    const results = await Promise.all(
      chunks.map((idx) =>
        pool.verifyMany(
          engine,
          alg,
          idx.map((i) => {
            const it = items[i] as { message: Uint8Array; signature: Uint8Array };
            const v = { publicKey: c.publicKey, message: it.message, signature: it.signature };
            return ctx === undefined ? v : { ...v, context: ctx };
          }),
        ),
      ),
    );
    const next: number[] = [];
    chunks.forEach((idx, k) =>
      idx.forEach((i, j) => {
        const r = results[k]?.[j];
        if (r === undefined) throw new KbError('INTERNAL', undefined, { detail: 'verifyMany result count' });
        if (!r.ok) {
          if (!r.error.isUserError) throw r.error;
          out[i] = { ok: false, error: r.error };
        } else if (r.value) out[i] = { ok: true, value: { valid: true, version: c.version } };
        else next.push(i);
      }),
    );
    pending = next;
  }
  return out;
}
