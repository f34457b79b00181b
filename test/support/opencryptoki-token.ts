/**
 * The opencryptoki software token (slot 3, "IBM SoftTok") for one test process. The token is
 * system-wide (/var/lib/opencryptoki/swtok), so this takes a lock, starts pkcsslotd if needed and
 * re-initialises the token deliberately (C_InitToken wipes every object) with a fresh user PIN.
 * `openCryptokiUnavailable()` says why the tests cannot run here (for t.skip with a reason).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';

export const OPENCRYPTOKI_MODULE = '/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0';
export const OPENCRYPTOKI_SLOT_DAEMON = '/usr/sbin/pkcsslotd';
/** The software token's slot in the Debian default opencryptoki.conf. */
export const OPENCRYPTOKI_SW_SLOT = 3;
/** The SO PIN stays the package default so any run can re-initialise the token. */
// opencryptoki 3.8 accepts PINs of 4-8 characters.
const SO_PIN = '87654321';
const LOCK_DIR = join(tmpdir(), 'keybroker-opencryptoki.lock');

export interface OpenCryptokiToken {
  readonly label: string;
  readonly pin: string;
  /** Re-initialises the token again (wiping the objects this run made) and releases the lock. */
  cleanup(): void;
}

/** Undefined when opencryptoki can be used here; otherwise the reason (printed by skipped tests). */
export function openCryptokiUnavailable(): string | undefined {
  if (!existsSync(OPENCRYPTOKI_MODULE)) return `opencryptoki module not installed (${OPENCRYPTOKI_MODULE})`;
  if (!existsSync(OPENCRYPTOKI_SLOT_DAEMON)) return `${OPENCRYPTOKI_SLOT_DAEMON} not installed`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    try {
      const groups = execFileSync('id', ['-Gn'], { encoding: 'utf8' });
      if (!groups.split(/\s+/).includes('pkcs11')) return 'not root and not in the pkcs11 group';
    } catch (err) {
      return `cannot read group membership: ${String(err)}`;
    }
  }
  return undefined;
}

function slotDaemonRunning(): boolean {
  try {
    execFileSync('pgrep', ['-x', 'pkcsslotd'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Start pkcsslotd (it daemonises itself) unless it runs already. */
export function ensureSlotDaemon(): void {
  if (slotDaemonRunning()) return;
  execFileSync(OPENCRYPTOKI_SLOT_DAEMON, { stdio: 'ignore' });
  for (let i = 0; i < 50 && !slotDaemonRunning(); i++)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  if (!slotDaemonRunning()) throw new Error('pkcsslotd did not start');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A cross-process lock (mkdir is atomic); a lock whose owner died is taken over. */
function lock(timeoutMs = 300_000): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(join(LOCK_DIR, 'pid'), String(process.pid));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = lockOwner();
      if (Number.isInteger(owner) && !pidAlive(owner)) rmSync(LOCK_DIR, { recursive: true, force: true });
      else if (Date.now() > deadline)
        throw new Error(`opencryptoki token lock held by ${owner}`, { cause: err });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
}

/** The pid in the lock, or NaN while the owner has not written it yet (treated as alive). */
function lockOwner(): number {
  try {
    return Number(readFileSync(join(LOCK_DIR, 'pid'), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return NaN;
    throw err;
  }
}

function unlock(): void {
  rmSync(LOCK_DIR, { recursive: true, force: true });
}

/**
 * C_InitToken (wipes all objects, sets the label) then C_InitPIN as SO, in a child process so the
 * caller's own C_Initialize of the module (maybe still open) is not disturbed.
 */
function initToken(label: string, pin: string): void {
  execFileSync(process.execPath, [import.meta.filename, 'init-token', label], {
    input: pin,
    stdio: ['pipe', 'inherit', 'inherit'],
  });
}

function initTokenInProcess(label: string, pin: string): void {
  const p = new pkcs11js.PKCS11();
  p.load(OPENCRYPTOKI_MODULE);
  p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    const slots = p.C_GetSlotList(false);
    const slot = slots.find((s) => s.readUInt32LE(0) === OPENCRYPTOKI_SW_SLOT);
    if (!slot) throw new Error(`opencryptoki slot ${OPENCRYPTOKI_SW_SLOT} not found`);
    p.C_InitToken(slot, SO_PIN, label.padEnd(32, ' '));
    const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p.C_Login(s, pkcs11js.CKU_SO, SO_PIN);
    p.C_InitPIN(s, pin);
    p.C_Logout(s);
    p.C_CloseSession(s);
  } finally {
    p.C_Finalize();
    p.close();
  }
}

/** Lock, start pkcsslotd, re-initialise the software token with `label` and a random user PIN. */
export function createOpenCryptokiToken(label = 'kb-test-ock'): OpenCryptokiToken {
  const why = openCryptokiUnavailable();
  if (why) throw new Error(why);
  lock();
  try {
    ensureSlotDaemon();
    const pin = randomBytes(4).toString('hex');
    initToken(label, pin);
    return {
      label,
      pin,
      cleanup: () => {
        try {
          initToken('kb-wiped', randomBytes(4).toString('hex'));
        } finally {
          unlock();
        }
      },
    };
  } catch (err) {
    unlock();
    throw err;
  }
}

if (process.argv[1] === import.meta.filename && process.argv[2] === 'init-token') {
  initTokenInProcess(process.argv[3] ?? 'kb-wiped', readFileSync(0, 'utf8').trim());
}
