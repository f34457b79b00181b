/**
 * One loaded PKCS#11 module, its token, a logged-in session pool, and the reconnect state machine:
 * up -> (device error) -> down -> (re-initialise + re-login with backoff) -> up. A wrong PIN stops
 * retries (state `failed`): retrying would lock the token.
 */
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { KbError } from '../errors.ts';
import type { HsmProfile } from './hsm-profile.ts';
import { HsmWorker } from './hsm-worker.ts';
import type { WorkerLane } from './hsm-worker.ts';
import type { HsmLogger } from './hsm-logger.ts';
import {
  call,
  deviceRemoved,
  isDeviceUnavailable,
  mayHideDeviceLoss,
  Pkcs11Error,
  toPkcs11Error,
} from './pkcs11-error.ts';
import { SessionPool } from './session-pool.ts';

// These moved to their own files; re-exported so existing importers keep working.
export { call, callAsync } from './pkcs11-error.ts';
export { silentLogger } from './hsm-logger.ts';
export type { HsmLogger } from './hsm-logger.ts';
export type { WorkerLane } from './hsm-worker.ts';

/** A session lent to one operation. Set `poisoned` if an operation may still be active on it. */
export interface SessionCtx {
  readonly handle: Buffer;
  readonly gen: number;
  poisoned: boolean;
}

export interface ConnectionOptions {
  readonly profile: HsmProfile;
  readonly modulePath: string;
  readonly pin: string;
  readonly tokenLabel?: string;
  readonly poolSize: number;
  readonly maxWaiters: number;
  readonly logger: HsmLogger;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  /** How often an idle connection checks its token (C_GetTokenInfo); 0 = never. */
  readonly probeIntervalMs: number;
}

interface Link {
  readonly gen: number;
  readonly slot: Buffer;
  readonly pool: SessionPool<Buffer>;
  readonly sessions: Set<Buffer>;
  inFlight: number;
  drained: (() => void)[];
}

type State = 'up' | 'down' | 'failed' | 'closed';

// Modules initialised in this process, by path: a second instance on the same module shares the
// C_Initialize (PKCS#11 allows one per process) and the last close finalises it.
const initialised = new Map<string, number>();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class Pkcs11Connection {
  readonly pkcs11: PKCS11;
  readonly #o: ConnectionOptions;
  #link: Link | undefined;
  #gen = 0;
  #state: State = 'down';
  #reason: string | undefined;
  #fault = false;
  #holdsInit = false;
  #upWaiters: (() => void)[] = [];
  #probeTimer: NodeJS.Timeout | undefined;
  #worker: HsmWorker | undefined;

  /** Loads the module, initialises it with CKF_OS_LOCKING_OK, opens the pool and logs in (sync). */
  constructor(o: ConnectionOptions) {
    this.#o = o;
    this.pkcs11 = new pkcs11js.PKCS11();
    call('load', () => this.pkcs11.load(o.modulePath));
    try {
      this.#link = this.#connect();
    } catch (err) {
      this.#quiet('close', () => this.pkcs11.close());
      throw err;
    }
    this.#state = 'up';
    if (o.probeIntervalMs > 0) {
      this.#probeTimer = setInterval(() => this.probeNow(), o.probeIntervalMs);
      this.#probeTimer.unref();
    }
  }

  get generation(): number {
    return this.#link?.gen ?? 0;
  }

  /** True while the GCM worker thread runs (started on first use, ended by close). */
  get workerRunning(): boolean {
    return this.#worker?.running ?? false;
  }

  get slot(): Buffer | undefined {
    return this.#link?.slot;
  }

  health(): { ok: boolean; reason?: string; sessionsInUse: number; sessionsTotal: number } {
    const pool = this.#link?.pool;
    const base = { sessionsInUse: pool?.inUse ?? 0, sessionsTotal: pool?.total ?? 0 };
    if (this.#state === 'up' && !this.#fault) return { ok: true, ...base };
    const reason = this.#fault ? 'fault injection: device unavailable' : (this.#reason ?? this.#state);
    return { ok: false, reason, ...base };
  }

  /** Test-only: while on, every call fails as CKR_DEVICE_REMOVED and reconnect attempts fail too. */
  setFaultInjection(on: boolean): void {
    this.#fault = on;
  }

  /** Resolves once the connection is up again; rejects after `timeoutMs`. */
  whenHealthy(timeoutMs: number): Promise<void> {
    if (this.#state === 'up' && !this.#fault) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new KbError('HSM_UNAVAILABLE', 'still down')), timeoutMs);
      this.#upWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /**
   * Lend a session to `fn`. Device errors take the connection down (callers get HSM_UNAVAILABLE)
   * and start the reconnect loop; a poisoned session is closed and replaced before reuse.
   */
  async withSession<T>(fn: (s: SessionCtx) => Promise<T>): Promise<T> {
    const link = this.#usableLink();
    const handle = await link.pool.acquire();
    const ctx: SessionCtx = { handle, gen: link.gen, poisoned: false };
    link.inFlight++;
    try {
      if (this.#fault) throw deviceRemoved('fault-injection');
      return await fn(ctx);
    } catch (err) {
      throw this.#failed(link, err);
    } finally {
      link.pool.release(ctx.poisoned ? this.#replaceSession(link, handle) : handle);
      this.#done(link);
    }
  }

  /**
   * Lend the worker-thread lane (started on first use) to `fn`; no pool session is taken. Its jobs
   * count as in flight, so a reconnect or close drains them before the module is finalised.
   */
  async withWorker<T>(fn: (lane: WorkerLane) => Promise<T>): Promise<T> {
    const link = this.#usableLink();
    this.#worker ??= new HsmWorker(this.#o.modulePath, this.#o.logger);
    const worker = this.#worker;
    const lane = worker.lane(link.gen, link.slot, () => this.#fault);
    link.inFlight++;
    try {
      if (this.#fault) throw deviceRemoved('fault-injection');
      return await fn(lane);
    } catch (err) {
      throw this.#failed(link, err);
    } finally {
      this.#done(link);
    }
  }

  /** A failed operation: device errors (or errors a probe shows to be device loss) take `link` down. */
  #failed(link: Link, err: unknown): unknown {
    let e = toPkcs11Error(err, 'unknown');
    if (!isDeviceUnavailable(e) && mayHideDeviceLoss(e)) e = this.#probe(link) ?? e;
    if (isDeviceUnavailable(e)) this.#markDown(link, e as Pkcs11Error);
    return e;
  }

  #done(link: Link): void {
    link.inFlight--;
    if (link.inFlight === 0) for (const d of link.drained.splice(0)) d();
  }

  /** Close every session and finalise the module; in-flight calls finish first. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearInterval(this.#probeTimer);
    const link = this.#link;
    this.#link = undefined;
    if (link) {
      link.pool.fail(new KbError('SHUTTING_DOWN'));
      await this.#drain(link);
      for (const s of link.sessions) this.#quiet('C_CloseSession', () => this.pkcs11.C_CloseSession(s));
    }
    // The worker's session closes and its thread ends before the module is finalised.
    await this.#worker?.terminate();
    this.#worker = undefined;
    this.#unload();
  }

  #usableLink(): Link {
    if (this.#state === 'closed') throw new KbError('SHUTTING_DOWN');
    const link = this.#link;
    if (this.#fault && link && this.#state === 'up') {
      const e = deviceRemoved('fault-injection');
      this.#markDown(link, e);
      throw e;
    }
    if (this.#state !== 'up' || !link) {
      throw new KbError('HSM_UNAVAILABLE', undefined, { detail: this.#reason ?? this.#state });
    }
    return link;
  }

  #connect(): Link {
    const p = this.pkcs11;
    const path = this.#o.modulePath;
    if (!initialised.has(path)) {
      try {
        // CKF_OS_LOCKING_OK is mandatory: with flags 0 SoftHSM turns its mutexes off and
        // concurrent async calls crash (PLATFORM.md).
        call('C_Initialize', () => p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }));
      } catch (err) {
        if (!(err instanceof Pkcs11Error && err.ckr === 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw err;
      }
    }
    initialised.set(path, (initialised.get(path) ?? 0) + 1);
    this.#holdsInit = true;
    const sessions = new Set<Buffer>();
    try {
      const slot = this.#selectSlot();
      const flags = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;
      for (let i = 0; i < this.#o.poolSize; i++)
        sessions.add(call('C_OpenSession', () => p.C_OpenSession(slot, flags)));
      const first = sessions.values().next().value;
      if (first === undefined) throw new Error('pool size must be at least 1');
      try {
        // Login is per application and token: one C_Login covers every session in the pool.
        call('C_Login', () => p.C_Login(first, pkcs11js.CKU_USER, this.#o.pin));
      } catch (err) {
        if (!(err instanceof Pkcs11Error && err.ckr === 'CKR_USER_ALREADY_LOGGED_IN')) throw err;
      }
      return {
        gen: ++this.#gen,
        slot,
        pool: new SessionPool([...sessions], this.#o.maxWaiters),
        sessions,
        inFlight: 0,
        drained: [],
      };
    } catch (err) {
      for (const s of sessions) this.#quiet('C_CloseSession', () => p.C_CloseSession(s));
      this.#release();
      throw err;
    }
  }

  #selectSlot(): Buffer {
    const p = this.pkcs11;
    const want = this.#o.profile.token;
    const label = this.#o.tokenLabel ?? want.label;
    const slots = call('C_GetSlotList', () => p.C_GetSlotList(true));
    if (label === undefined && want.serial === undefined && want.slotIndex !== undefined) {
      const slot = slots[want.slotIndex];
      if (slot) return slot;
    }
    for (const slot of slots) {
      const info = call('C_GetTokenInfo', () => p.C_GetTokenInfo(slot));
      if (label !== undefined && info.label.trim() === label) return slot;
      if (label === undefined && want.serial !== undefined && info.serialNumber.trim() === want.serial)
        return slot;
    }
    const err = new Pkcs11Error('CKR_TOKEN_NOT_PRESENT', pkcs11js.CKR_TOKEN_NOT_PRESENT, 'C_GetSlotList');
    this.#reason = `token ${label !== undefined ? `labelled ${JSON.stringify(label)}` : 'selected by the profile'} not found`;
    throw err;
  }

  /** Periodic check: C_GetTokenInfo; takes the connection down if the token is gone. */
  probeNow(): boolean {
    const link = this.#link;
    if (this.#state !== 'up' || !link) return false;
    const e = this.#probe(link);
    if (e) this.#markDown(link, e);
    return e === undefined;
  }

  /**
   * Ask the token whether it is still there. SoftHSM never says CKR_DEVICE_REMOVED: when its token
   * directory vanishes, handles turn invalid, finds come back empty and C_GetTokenInfo fails with
   * CKR_GENERAL_ERROR until the module is re-initialised, so that failure counts as device loss.
   */
  #probe(link: Link): Pkcs11Error | undefined {
    try {
      this.pkcs11.C_GetTokenInfo(link.slot);
      return undefined;
    } catch (err) {
      const e = toPkcs11Error(err, 'C_GetTokenInfo');
      if (e instanceof Pkcs11Error) return new Pkcs11Error(e.ckr, e.code, e.fn, 'device-unavailable');
      return deviceRemoved('C_GetTokenInfo');
    }
  }

  #replaceSession(link: Link, old: Buffer): Buffer {
    if (link !== this.#link || this.#state !== 'up') return old;
    this.#quiet('C_CloseSession', () => this.pkcs11.C_CloseSession(old));
    link.sessions.delete(old);
    try {
      const fresh = call('C_OpenSession', () =>
        this.pkcs11.C_OpenSession(link.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
      );
      link.sessions.add(fresh);
      return fresh;
    } catch (err) {
      const e = toPkcs11Error(err, 'C_OpenSession');
      this.#markDown(link, e instanceof Pkcs11Error ? e : deviceRemoved('C_OpenSession'));
      return old;
    }
  }

  #markDown(link: Link, err: Pkcs11Error): void {
    if (link !== this.#link || this.#state !== 'up') return;
    this.#state = 'down';
    this.#reason = `${err.ckr} in ${err.fn}`;
    this.#o.logger.warn(
      { ckr: err.ckr, fn: err.fn, profile: this.#o.profile.name },
      'HSM unavailable, reconnecting',
    );
    link.pool.fail(new KbError('HSM_UNAVAILABLE', undefined, { detail: this.#reason }));
    void this.#reconnectLoop(link);
  }

  async #reconnectLoop(old: Link): Promise<void> {
    await this.#drain(old);
    // Drained, so the worker is idle: its session goes before C_Finalize (no call can race it).
    await this.#worker?.closeSessions();
    let delay = this.#o.reconnectInitialDelayMs;
    for (let attempt = 1; this.#state === 'down'; attempt++) {
      await sleep(delay);
      if (this.#state !== 'down') return;
      try {
        if (this.#fault) throw deviceRemoved('fault-injection');
        // Finalise (if no other instance shares the module) so the module forgets the dead device.
        for (const sess of old.sessions)
          this.#quiet('C_CloseSession', () => this.pkcs11.C_CloseSession(sess));
        old.sessions.clear();
        this.#link = undefined;
        this.#release();
        this.#link = this.#connect();
        this.#state = 'up';
        this.#reason = undefined;
        this.#o.logger.info({ attempt, profile: this.#o.profile.name }, 'HSM reconnected');
        for (const w of this.#upWaiters.splice(0)) w();
        return;
      } catch (err) {
        const e = toPkcs11Error(err, 'reconnect');
        const ckr = e instanceof Pkcs11Error ? e.ckr : 'error';
        if (e instanceof Pkcs11Error && e.kind === 'locked') {
          this.#state = 'failed';
          this.#reason = `login refused (${ckr}); not retrying`;
          this.#o.logger.error({ ckr, attempt }, 'HSM login refused; reconnect stopped');
          return;
        }
        if (e instanceof Pkcs11Error && !this.#reason?.startsWith('token'))
          this.#reason = `${ckr} in ${e.fn}`;
        this.#o.logger.warn(
          { ckr, attempt, nextDelayMs: Math.min(delay * 2, this.#o.reconnectMaxDelayMs) },
          'HSM reconnect attempt failed',
        );
      }
      delay = Math.min(delay * 2, this.#o.reconnectMaxDelayMs);
    }
  }

  #drain(link: Link): Promise<void> {
    if (link.inFlight === 0) return Promise.resolve();
    return new Promise<void>((r) => link.drained.push(r));
  }

  /** Drop this instance's share of the module's C_Initialize; finalise when it is the last. */
  #release(): void {
    if (!this.#holdsInit) return;
    this.#holdsInit = false;
    const path = this.#o.modulePath;
    const n = initialised.get(path) ?? 0;
    if (n <= 1) {
      initialised.delete(path);
      this.#quiet('C_Finalize', () => this.pkcs11.C_Finalize());
    } else {
      initialised.set(path, n - 1);
    }
  }

  #unload(): void {
    this.#release();
    this.#quiet('close', () => this.pkcs11.close());
  }

  /** Best-effort cleanup call whose failure is logged, not thrown (the device may be gone). */
  #quiet(fn: string, f: () => void): void {
    try {
      f();
    } catch (err) {
      const e = toPkcs11Error(err, fn);
      this.#o.logger.info(
        { fn, ckr: e instanceof Pkcs11Error ? e.ckr : String(e) },
        'PKCS#11 cleanup call failed',
      );
    }
  }
}
