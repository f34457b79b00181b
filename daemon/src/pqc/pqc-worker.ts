/**
 * Worker-thread entry for PqcWorkerPool: owns its own engines (OpenSSL and liboqs), runs the
 * power-on self-test on them, then serves batches of operations. Loaded private keys are cached
 * by a digest of (engine, alg, form, bytes), so repeated signing with one key skips re-import;
 * evicted keys are destroyed.
 */
import { parentPort } from 'node:worker_threads';
import { KbError } from '../errors.ts';
import { LiboqsEngine } from './liboqs-engine.ts';
import { OpenSslEngine } from './openssl-engine.ts';
import type { EngineName, PqcEngine, PqcPrivateKey } from './pqc-engine.ts';
import type {
  ItemResult,
  PqcWorkerOp,
  PqcWorkerReady,
  PqcWorkerReply,
  PqcWorkerRequest,
  PqcWorkerResult,
  WirePrivateKey,
} from './pqc-worker-protocol.ts';
import { workerKeyId } from './pqc-worker-protocol.ts';
import type { PqcAlgorithm } from './pqc-params.ts';
import { runSelfTest } from './self-test.ts';
import { generateCompositeKeyPair } from './composite-mldsa65-ecdsa-p256.ts';
import { XWing } from './xwing.ts';

const KEY_CACHE_MAX = 64;
/**
 * A cached key unused this long is destroyed. The main thread evicts what it drops ('evictKeys'),
 * so this only bounds what a lost eviction message could leave behind.
 */
const KEY_CACHE_TTL_MS = 5 * 60_000;
const port = parentPort;
if (port === null) throw new Error('pqc-worker.ts must run in a worker thread');

const openssl = new OpenSslEngine();
const engines: Record<EngineName, PqcEngine> = { openssl, liboqs: await LiboqsEngine.create() };
const keys = new Map<string, { key: PqcPrivateKey; usedAt: number }>();

function sweepKeys(): void {
  const old = Date.now() - KEY_CACHE_TTL_MS;
  for (const [id, e] of keys) {
    if (e.usedAt > old) continue;
    keys.delete(id);
    e.key.destroy();
  }
}
setInterval(sweepKeys, 30_000).unref();
const xwing = new XWing(openssl, openssl);

function loadKey(engine: PqcEngine, alg: PqcAlgorithm, k: WirePrivateKey): PqcPrivateKey {
  const id = workerKeyId(engine.name, alg, k.form, k.bytes);
  const hit = keys.get(id);
  if (hit !== undefined) {
    keys.delete(id);
    keys.set(id, { key: hit.key, usedAt: Date.now() });
    return hit.key;
  }
  let key: PqcPrivateKey;
  if (k.form === 'seed' && !engine.capabilities.keygenFromSeed) {
    const pair = openssl.generateKeyPair(alg, k.bytes);
    key = engine.loadPrivateKey(alg, 'expanded', pair.secretKey.expose(), k.publicKey);
    pair.secretKey.destroy();
    pair.seed?.destroy();
  } else {
    key = engine.loadPrivateKey(alg, k.form, k.bytes, k.publicKey);
  }
  keys.set(id, { key, usedAt: Date.now() });
  if (keys.size > KEY_CACHE_MAX) {
    const [oldestId, oldest] = keys.entries().next().value as [string, { key: PqcPrivateKey }];
    keys.delete(oldestId);
    oldest.key.destroy();
  }
  return key;
}

function run(w: PqcWorkerOp): { result: PqcWorkerResult; transfer: ArrayBuffer[] } {
  if (w.op === 'evictKeys') return evictKeys(w.ids);
  const engine = engines[w.engine];
  if (engine === undefined) throw new KbError('INVALID_ARGUMENT', `engine must be openssl or liboqs`);
  const t = (...arrays: Uint8Array[]): ArrayBuffer[] => arrays.map((a) => a.buffer as ArrayBuffer);
  // Results leave in fresh buffers so transferring them never detaches engine-owned memory.
  const own = (a: Uint8Array): Uint8Array => Uint8Array.from(a);
  switch (w.op) {
    case 'generateKeyPair': {
      const kp = engine.generateKeyPair(w.alg, w.seed);
      const publicKey = own(kp.publicKey);
      const secretKey = own(kp.secretKey.expose());
      kp.secretKey.destroy();
      const seed = kp.seed === undefined ? undefined : own(kp.seed.expose());
      kp.seed?.destroy();
      const result =
        seed === undefined ? { op: w.op, publicKey, secretKey } : { op: w.op, publicKey, secretKey, seed };
      return { result, transfer: t(publicKey, secretKey, ...(seed ? [seed] : [])) };
    }
    case 'generateHybridKey': {
      const kp =
        w.kind === 'x-wing'
          ? (({ publicKey, seed }) => ({ publicKey, privateKey: seed }))(xwing.generateKeyPair())
          : generateCompositeKeyPair(openssl);
      const publicKey = own(kp.publicKey);
      const secret = own(kp.privateKey.expose());
      kp.privateKey.destroy();
      return { result: { op: w.op, publicKey, secret }, transfer: t(publicKey, secret) };
    }
    case 'encapsulate': {
      const e = engine.encapsulate(w.alg, w.publicKey);
      const cipherText = own(e.cipherText);
      const sharedSecret = own(e.sharedSecret);
      e.sharedSecret.fill(0);
      return { result: { op: w.op, cipherText, sharedSecret }, transfer: t(cipherText, sharedSecret) };
    }
    case 'encapsulateMany': {
      const encapsulations = engine.encapsulateMany(w.alg, w.publicKey, w.count).map((e) => {
        const out = { cipherText: own(e.cipherText), sharedSecret: own(e.sharedSecret) };
        e.sharedSecret.fill(0);
        return out;
      });
      return {
        result: { op: w.op, encapsulations },
        transfer: t(...encapsulations.flatMap((e) => [e.cipherText, e.sharedSecret])),
      };
    }
    case 'decapsulate': {
      const ss = engine.decapsulate(loadKey(engine, w.alg, w.key), w.cipherText);
      const sharedSecret = own(ss);
      ss.fill(0);
      return { result: { op: w.op, sharedSecret }, transfer: t(sharedSecret) };
    }
    case 'sign': {
      const signature = own(engine.sign(loadKey(engine, w.alg, w.key), w.message, w.context));
      return { result: { op: w.op, signature }, transfer: t(signature) };
    }
    case 'verify':
      return {
        result: { op: w.op, valid: engine.verify(w.alg, w.publicKey, w.message, w.signature, w.context) },
        transfer: [],
      };
    case 'signMany': {
      const key = loadKey(engine, w.alg, w.key);
      const signatures = w.messages.map((m) => item(() => own(engine.sign(key, m, w.context))));
      return {
        result: { op: w.op, signatures },
        transfer: t(...signatures.flatMap((r) => (r.ok ? [r.value] : []))),
      };
    }
    case 'decapsulateMany': {
      const key = loadKey(engine, w.alg, w.key);
      const sharedSecrets = w.cipherTexts.map((c) =>
        item(() => {
          const ss = engine.decapsulate(key, c);
          const out = own(ss);
          ss.fill(0);
          return out;
        }),
      );
      return {
        result: { op: w.op, sharedSecrets },
        transfer: t(...sharedSecrets.flatMap((r) => (r.ok ? [r.value] : []))),
      };
    }
    case 'verifyMany': {
      const valid = w.items.map((i) =>
        item(() => engine.verify(w.alg, i.publicKey, i.message, i.signature, i.context)),
      );
      return { result: { op: w.op, valid }, transfer: [] };
    }
  }
}

/** Destroy the cached keys with these ids (the main thread dropped them, e.g. at a shred). */
function evictKeys(ids: readonly string[]): { result: PqcWorkerResult; transfer: ArrayBuffer[] } {
  let evicted = 0;
  for (const id of ids) {
    const e = keys.get(id);
    if (e === undefined) continue;
    keys.delete(id);
    e.key.destroy();
    evicted++;
  }
  return { result: { op: 'evictKeys', evicted, remaining: keys.size }, transfer: [] };
}

/** Run one batch item; a KbError stays with the item, anything else aborts the batch. */
function item<T>(fn: () => T): ItemResult<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (!(err instanceof KbError) || !err.isUserError) throw err;
    return { ok: false, code: err.code, message: err.safeMessage };
  }
}

const report = await runSelfTest([engines.openssl, engines.liboqs]);
const ready: PqcWorkerReady = {
  ready: true,
  selfTestOk: report.ok,
  failed: report.results.filter((r) => !r.ok).map((r) => `${r.engine}/${r.algorithm}/${r.check}`),
};
port.postMessage(ready);

port.on('message', (batch: PqcWorkerRequest[]) => {
  const replies: PqcWorkerReply[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const req of batch) {
    try {
      const r = run(req.work);
      replies.push({ id: req.id, ok: true, result: r.result });
      transfer.push(...r.transfer);
    } catch (err) {
      const kb = err instanceof KbError ? err : new KbError('INTERNAL');
      replies.push({ id: req.id, ok: false, code: kb.code, message: kb.safeMessage });
    }
  }
  port.postMessage(replies, transfer);
});
