/**
 * The PKCS#11 implementation of `Hsm`, driven by a profile (hsm-profiles/*.json).
 *
 * Open it with:
 *   const profile = loadProfile('softhsm2');              // or a path; from ./hsm-profile.ts
 *   const hsm = await Pkcs11Hsm.open({ profile, pin, tokenLabel?, poolSize?, maxWaiters?, logger? });
 *   ...; await hsm.close();
 * `pin` is kept in memory for re-login after a reconnect; it is never logged nor put in an error.
 * SoftHSM reads SOFTHSM2_CONF at C_Initialize: set it before `open` (test/support/softhsm-token.ts).
 * Tests of "HSM goes away, then returns": `hsm.setFaultInjection(true|false)` + `hsm.whenHealthy(ms)`.
 * One instance per module per process is the intended setup: a second one shares the module's
 * C_Initialize and login (PKCS#11 allows one per process), and only the last close finalises it.
 * The long calls (wrap, unwrap, sign, key generation) are C_*Async; the short *Init,
 * C_CreateObject, C_GetAttributeValue and C_DestroyObject steps have no async variant in pkcs11js
 * and run on the event loop (microseconds each on SoftHSM). AES-GCM and ECDSA signing run by
 * default on the HSM worker thread with sync calls in batches (hsm-worker.ts explains why, with
 * numbers); no Cryptoki call of that path runs on the event loop.
 */
import { createHash, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { KbError, decryptionFailed } from '../errors.ts';
import type {
  Hsm,
  HsmCapabilities,
  HsmHealth,
  HsmKeyRef,
  HsmSigningAlgorithm,
  RootKeyOptions,
} from './hsm.ts';
import { resolveModulePath } from './hsm-profile.ts';
import type { HsmProfile } from './hsm-profile.ts';
import { ecdsaRawToDer } from './key-encoding.ts';
import type { HsmJob } from './hsm-worker.ts';
import { Pkcs11Connection, call, callAsync, silentLogger } from './pkcs11-connection.ts';
import type { HsmLogger, SessionCtx, WorkerLane } from './pkcs11-connection.ts';
import { Pkcs11Error, toPkcs11Error } from './pkcs11-error.ts';
import { KeyHandles } from './key-handles.ts';
import type { SigningHandles } from './key-handles.ts';
import { plausibleWrapLength, unwrapInToken, wrapInToken } from './key-wrap.ts';
import { endOperation } from './session-ops.ts';

const P = pkcs11js;

export interface Pkcs11HsmOptions {
  readonly profile: HsmProfile;
  /** The CKU_USER PIN. */
  readonly pin: string;
  /** Overrides the profile's token selection. */
  readonly tokenLabel?: string;
  /** Overrides the profile's pool size / queue bound. */
  readonly poolSize?: number;
  readonly maxWaiters?: number;
  readonly logger?: HsmLogger;
  /** Reconnect backoff (defaults 100 ms doubling to 5 s). */
  readonly reconnectInitialDelayMs?: number;
  readonly reconnectMaxDelayMs?: number;
  /** Idle token check interval (default 10 s; 0 = off): finds a vanished token without traffic. */
  readonly probeIntervalMs?: number;
  /**
   * AES-GCM and ECDSA signing run on the HSM worker thread (sync calls in batches, hsm-worker.ts)
   * unless this is false: then on C_*Async with a pooled session (kept for comparison).
   */
  readonly workerThread?: boolean;
}

/** Bounds checked at this boundary. */
export const HSM_LIMITS = {
  minWrapKey: 16,
  maxWrapKey: 64,
  maxGcmPlaintext: 64 * 1024,
  maxAad: 16 * 1024,
  maxRandom: 64 * 1024,
  maxLabel: 128,
} as const;

const GCM_IV = 12;
const NONE = new Uint8Array(0);
const GCM_TAG = 16;
const LABEL_RE = /^[\x21-\x7e]+$/;

export class Pkcs11Hsm implements Hsm {
  readonly profileName: string;
  readonly capabilities: HsmCapabilities;
  readonly #profile: HsmProfile;
  readonly #conn: Pkcs11Connection;
  readonly #keys: KeyHandles;
  readonly #onWorkerThread: boolean;
  /** Tail of the token-write queue (see #tokenWrite). */
  #tokenWrites: Promise<void> = Promise.resolve();

  private constructor(
    profile: HsmProfile,
    conn: Pkcs11Connection,
    onWorkerThread: boolean,
    logger: HsmLogger,
  ) {
    this.#onWorkerThread = onWorkerThread;
    this.#profile = profile;
    this.#conn = conn;
    this.profileName = profile.name;
    this.capabilities = { wrap: profile.wrap, aesGcm: profile.aesGcm, signing: [...profile.signing] };
    this.#keys = new KeyHandles(conn, profile, logger);
  }

  /** Load the profile's module, C_Initialize (CKF_OS_LOCKING_OK), open the pool and log in. */
  static async open(o: Pkcs11HsmOptions): Promise<Pkcs11Hsm> {
    const { profile } = o;
    const modulePath = resolveModulePath(profile);
    if (modulePath === undefined) {
      throw new KbError('HSM_UNAVAILABLE', `no PKCS#11 module of profile ${profile.name} found`, {
        detail: `tried ${profile.module.paths.join(', ')}`,
      });
    }
    for (const [k, v] of Object.entries(profile.module.env ?? {})) process.env[k] ??= v;
    const logger = o.logger ?? silentLogger;
    try {
      const conn = new Pkcs11Connection({
        profile,
        modulePath,
        pin: o.pin,
        ...(o.tokenLabel !== undefined ? { tokenLabel: o.tokenLabel } : {}),
        poolSize: o.poolSize ?? profile.pool.size,
        maxWaiters: o.maxWaiters ?? profile.pool.maxWaiters,
        logger,
        reconnectInitialDelayMs: o.reconnectInitialDelayMs ?? 100,
        reconnectMaxDelayMs: o.reconnectMaxDelayMs ?? 5000,
        probeIntervalMs: o.probeIntervalMs ?? 10_000,
      });
      logger.info({ profile: profile.name, module: modulePath }, 'HSM session pool ready');
      return new Pkcs11Hsm(profile, conn, o.workerThread ?? true, logger);
    } catch (err) {
      const e = toPkcs11Error(err, 'open');
      if (e instanceof Pkcs11Error) {
        const what = e.ckr === 'CKR_TOKEN_NOT_PRESENT' ? 'token not found' : `${e.ckr} in ${e.fn}`;
        throw new KbError('HSM_UNAVAILABLE', `cannot open HSM (${what})`, { detail: e.message, cause: e });
      }
      throw new KbError('HSM_UNAVAILABLE', 'cannot open HSM', { cause: e });
    }
  }

  /** The loaded module's connection (for doctor and benchmarks; not for the daemon's data path). */
  get connection(): Pkcs11Connection {
    return this.#conn;
  }

  /** Test-only fault switch: while on, every call fails as device-unavailable (HSM_UNAVAILABLE). */
  setFaultInjection(on: boolean): void {
    this.#conn.setFaultInjection(on);
  }

  /** Resolves when the HSM is reachable again (after a reconnect); rejects after `timeoutMs`. */
  whenHealthy(timeoutMs: number): Promise<void> {
    return this.#conn.whenHealthy(timeoutMs);
  }

  async generateRootKey(label: string, opts?: RootKeyOptions): Promise<HsmKeyRef> {
    checkLabel(label);
    return this.#tokenWrite(() => this.#op(false, (s) => this.#keys.createRoot(s, label, opts)));
  }

  async findKey(label: string, kind: HsmKeyRef['kind']): Promise<HsmKeyRef | undefined> {
    checkLabel(label);
    return this.#op(false, async (s) => {
      const found = kind === 'root' ? this.#keys.root(s, label) : this.#keys.signing(s, label);
      return found ? { label, kind } : undefined;
    });
  }

  async destroyKey(ref: HsmKeyRef): Promise<void> {
    checkLabel(ref.label);
    await this.#tokenWrite(() => this.#op(false, async (s) => this.#keys.destroy(s, ref)));
  }

  async wrapKey(root: HsmKeyRef, key: Uint8Array): Promise<Uint8Array> {
    checkRef(root, 'root');
    if (key.length < HSM_LIMITS.minWrapKey || key.length > HSM_LIMITS.maxWrapKey) {
      throw new KbError(
        'INVALID_ARGUMENT',
        `key to wrap must be ${HSM_LIMITS.minWrapKey}-${HSM_LIMITS.maxWrapKey} bytes`,
      );
    }
    return this.#op(false, async (s) =>
      wrapInToken(this.#conn, this.#profile, s, this.#keys.requireRoot(s, root.label), key),
    );
  }

  async unwrapKey(root: HsmKeyRef, wrapped: Uint8Array): Promise<Uint8Array> {
    checkRef(root, 'root');
    // Shapes no wrap of 16-64 bytes can have are rejected before the HSM, with the same error.
    if (!plausibleWrapLength(this.#profile.wrap, wrapped.length)) throw decryptionFailed();
    return this.#op(true, async (s) =>
      unwrapInToken(this.#conn, this.#profile, s, this.#keys.requireRoot(s, root.label), wrapped),
    );
  }

  async encryptGcm(root: HsmKeyRef, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkRef(root, 'root');
    this.#requireGcm();
    // Empty plaintext: pkcs11js passes a NULL buffer and SoftHSM answers CKR_ARGUMENTS_BAD.
    if (plaintext.length === 0) throw new KbError('INVALID_ARGUMENT', 'plaintext must not be empty');
    if (plaintext.length > HSM_LIMITS.maxGcmPlaintext) throw new KbError('TOO_LARGE', 'plaintext');
    if (aad.length > HSM_LIMITS.maxAad) throw new KbError('TOO_LARGE', 'aad');
    if (this.#onWorkerThread) {
      // SoftHSM does not stop IV reuse: the broker makes a fresh random 96-bit IV per call.
      const iv = randomBytes(GCM_IV);
      const ct = await this.#onWorker(false, root.label, { op: 'encrypt', iv, aad, data: plaintext });
      return Buffer.concat([iv, ct]);
    }
    return this.#op(false, async (s) => {
      const h = this.#keys.requireRoot(s, root.label);
      // SoftHSM does not stop IV reuse: the broker makes a fresh random 96-bit IV per call.
      const iv = randomBytes(GCM_IV);
      const p = this.#conn.pkcs11;
      call('C_EncryptInit', () => p.C_EncryptInit(s.handle, gcmMechanism(iv, aad), h.aes));
      try {
        const out = Buffer.alloc(plaintext.length + GCM_TAG);
        const ct = await callAsync('C_Encrypt', () =>
          p.C_EncryptAsync(s.handle, Buffer.from(plaintext), out),
        );
        return Buffer.concat([iv, ct]);
      } catch (err) {
        endOperation(this.#conn, s, 'encrypt');
        throw err;
      }
    });
  }

  async decryptGcm(root: HsmKeyRef, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkRef(root, 'root');
    this.#requireGcm();
    if (
      sealed.length < GCM_IV + GCM_TAG + 1 ||
      sealed.length > HSM_LIMITS.maxGcmPlaintext + GCM_IV + GCM_TAG
    ) {
      throw decryptionFailed();
    }
    if (aad.length > HSM_LIMITS.maxAad) throw new KbError('TOO_LARGE', 'aad');
    if (this.#onWorkerThread) {
      const iv = sealed.subarray(0, GCM_IV);
      return this.#onWorker(true, root.label, { op: 'decrypt', iv, aad, data: sealed.subarray(GCM_IV) });
    }
    return this.#op(true, async (s) => {
      const h = this.#keys.requireRoot(s, root.label);
      const buf = Buffer.from(sealed);
      const p = this.#conn.pkcs11;
      call('C_DecryptInit', () =>
        p.C_DecryptInit(s.handle, gcmMechanism(buf.subarray(0, GCM_IV), aad), h.aes),
      );
      try {
        const out = Buffer.alloc(buf.length - GCM_IV);
        const pt = await callAsync('C_Decrypt', () => p.C_DecryptAsync(s.handle, buf.subarray(GCM_IV), out));
        return new Uint8Array(pt.buffer, pt.byteOffset, pt.length);
      } catch (err) {
        endOperation(this.#conn, s, 'decrypt');
        throw err;
      }
    });
  }

  async generateSigningKey(
    label: string,
    alg: HsmSigningAlgorithm,
  ): Promise<{ ref: HsmKeyRef; spki: Uint8Array }> {
    checkLabel(label);
    if (!this.capabilities.signing.includes(alg)) {
      throw new KbError('ALGORITHM_NOT_ALLOWED', `${alg} is not offered by HSM profile ${this.profileName}`);
    }
    return this.#tokenWrite(() =>
      this.#op(false, async (s) => {
        const spki = await this.#keys.createSigning(s, label, alg);
        return { ref: { label, kind: 'signing' }, spki };
      }),
    );
  }

  async publicKey(ref: HsmKeyRef): Promise<Uint8Array> {
    checkRef(ref, 'signing');
    return this.#op(false, async (s) => this.#keys.publicKey(s, ref.label));
  }

  async sign(
    ref: HsmKeyRef,
    message: Uint8Array,
  ): Promise<{ alg: HsmSigningAlgorithm; signature: Uint8Array }> {
    checkRef(ref, 'signing');
    if (message.length > HSM_LIMITS.maxGcmPlaintext) throw new KbError('TOO_LARGE', 'message');
    const digest = createHash('sha256').update(message).digest();
    if (this.#onWorkerThread) {
      // ECDSA (tens of microseconds) runs on the worker thread like GCM; RSA-PSS (milliseconds,
      // would stall the worker's queue) stays on C_SignAsync, which can use several threads.
      const done = await mapFailure(false, () =>
        this.#conn.withWorker(async (lane) => {
          const h =
            this.#keys.cachedSigning(ref.label, lane.gen) ??
            (await this.#conn.withSession(async (s) => this.#keys.requireSigning(s, ref.label)));
          if (h.alg !== 'ecdsa-p256') return undefined;
          const raw = await lane.run({ op: 'sign-ecdsa', key: h.priv, iv: NONE, aad: NONE, data: digest });
          return { alg: h.alg, signature: ecdsaRawToDer(raw) };
        }),
      );
      if (done) return done;
    }
    return this.#op(false, async (s) => {
      const h = this.#keys.requireSigning(s, ref.label);
      const signature = await this.#signDigest(s, h, digest, message);
      return { alg: h.alg, signature };
    });
  }

  async generateRandom(length: number): Promise<Uint8Array> {
    if (!Number.isInteger(length) || length < 1 || length > HSM_LIMITS.maxRandom) {
      throw new KbError('INVALID_ARGUMENT', `random length must be 1-${HSM_LIMITS.maxRandom}`);
    }
    return this.#op(false, async (s) =>
      // C_GenerateRandom has no async variant; it costs microseconds for these sizes.
      call('C_GenerateRandom', () => this.#conn.pkcs11.C_GenerateRandom(s.handle, Buffer.alloc(length))),
    );
  }

  health(): HsmHealth {
    return this.#conn.health();
  }

  async close(): Promise<void> {
    this.#keys.clear();
    await this.#conn.close();
  }

  async #signDigest(
    s: SessionCtx,
    h: SigningHandles,
    digest: Buffer,
    message: Uint8Array,
  ): Promise<Uint8Array> {
    const p = this.#conn.pkcs11;
    let mech: pkcs11js.Mechanism;
    let input = digest;
    let outLen = 64;
    if (h.alg === 'ecdsa-p256') {
      mech = { mechanism: P.CKM_ECDSA };
    } else {
      const inHsmHash = this.#profile.rsaPssMechanism === 'CKM_SHA256_RSA_PKCS_PSS';
      const parameter: pkcs11js.RsaPSS = {
        type: P.CK_PARAMS_RSA_PSS,
        hashAlg: P.CKM_SHA256,
        mgf: P.CKG_MGF1_SHA256,
        saltLen: 32,
      };
      mech = { mechanism: inHsmHash ? P.CKM_SHA256_RSA_PKCS_PSS : P.CKM_RSA_PKCS_PSS, parameter };
      if (inHsmHash) input = Buffer.from(message);
      outLen = 384;
    }
    call('C_SignInit', () => p.C_SignInit(s.handle, mech, h.priv));
    try {
      const sig = await callAsync('C_Sign', () => p.C_SignAsync(s.handle, input, Buffer.alloc(outLen)));
      return h.alg === 'ecdsa-p256' ? ecdsaRawToDer(sig) : sig;
    } catch (err) {
      endOperation(this.#conn, s, 'sign');
      throw err;
    }
  }

  #requireGcm(): void {
    if (!this.#profile.aesGcm) {
      throw new KbError('UNIMPLEMENTED', `AES-GCM is not available in HSM profile ${this.profileName}`);
    }
  }

  /**
   * Token-object creation and destruction one at a time. Why: concurrent C_GenerateKeyPair and
   * C_GenerateKey/C_DestroyObject on token objects from several sessions failed now and then with
   * CKR_GENERAL_ERROR on SoftHSM 2.6.1 (test/keys/concurrency.test.ts, about 1 run in 8). These are
   * rare admin-path calls (root keys, shred epochs, signing keys), so the queue costs nothing.
   */
  #tokenWrite<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tokenWrites.then(fn, fn);
    this.#tokenWrites = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Run `fn` on a pooled session and map failures: decrypt paths get the one opaque error. */
  async #op<T>(decrypt: boolean, fn: (s: SessionCtx) => Promise<T>): Promise<T> {
    return mapFailure(decrypt, () => this.#conn.withSession(fn));
  }

  /** An AES-GCM job on the worker lane, with the root key's handle (found on a pooled session once). */
  async #onWorker(decrypt: boolean, label: string, job: Omit<HsmJob, 'key'>): Promise<Uint8Array> {
    return mapFailure(decrypt, () =>
      this.#conn.withWorker(async (lane: WorkerLane) => {
        const h =
          this.#keys.cachedRoot(label, lane.gen) ??
          (await this.#conn.withSession(async (s) => this.#keys.requireRoot(s, label)));
        return lane.run({ ...job, key: h.aes });
      }),
    );
  }
}

async function mapFailure<T>(decrypt: boolean, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof KbError) throw err;
    if (err instanceof Pkcs11Error) {
      if (err.kind === 'device-unavailable' || err.kind === 'locked') throw err.toKbError();
      if (decrypt) throw decryptionFailed(err);
      throw err.toKbError();
    }
    throw new KbError('INTERNAL', undefined, {
      cause: err,
      detail: err instanceof Error ? err.message : String(err),
    });
  }
}

function gcmMechanism(iv: Buffer, aad: Uint8Array): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = {
    type: P.CK_PARAMS_AES_GCM,
    iv: Buffer.from(iv),
    aad: Buffer.from(aad),
    ivBits: 96,
    tagBits: 128,
  };
  return { mechanism: P.CKM_AES_GCM, parameter };
}

function checkLabel(label: string): void {
  if (
    typeof label !== 'string' ||
    label.length < 1 ||
    label.length > HSM_LIMITS.maxLabel ||
    !LABEL_RE.test(label)
  ) {
    throw new KbError(
      'INVALID_ARGUMENT',
      `key label must be 1-${HSM_LIMITS.maxLabel} printable ASCII characters`,
    );
  }
}

function checkRef(ref: HsmKeyRef, kind: HsmKeyRef['kind']): void {
  checkLabel(ref.label);
  if (ref.kind !== kind) throw new KbError('INVALID_ARGUMENT', `expected a ${kind} key`);
}
