/**
 * Typed PKCS#11 failures: the CKR code name and the Cryptoki function, classified into a few kinds
 * that decide what the broker does (reconnect, report, reject input) and which KbError a caller sees.
 */
import pkcs11js from 'pkcs11js';
import { KbError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';

/** What a CKR code means to the broker. */
export type Pkcs11ErrorKind = 'not-found' | 'invalid-input' | 'device-unavailable' | 'locked' | 'internal';

const KINDS: Record<string, Pkcs11ErrorKind> = {};
function classify(kind: Pkcs11ErrorKind, names: readonly string[]): void {
  for (const n of names) KINDS[n] = kind;
}
classify('not-found', [
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_WRAPPING_KEY_HANDLE_INVALID',
  'CKR_UNWRAPPING_KEY_HANDLE_INVALID',
]);
classify('invalid-input', [
  'CKR_ARGUMENTS_BAD',
  'CKR_DATA_INVALID',
  'CKR_DATA_LEN_RANGE',
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_WRAPPED_KEY_INVALID',
  'CKR_WRAPPED_KEY_LEN_RANGE',
  'CKR_SIGNATURE_INVALID',
  'CKR_SIGNATURE_LEN_RANGE',
  'CKR_MECHANISM_INVALID',
  'CKR_MECHANISM_PARAM_INVALID',
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_ATTRIBUTE_TYPE_INVALID',
  'CKR_ATTRIBUTE_READ_ONLY',
  'CKR_ATTRIBUTE_SENSITIVE',
  'CKR_TEMPLATE_INCOMPLETE',
  'CKR_TEMPLATE_INCONSISTENT',
  'CKR_KEY_SIZE_RANGE',
  'CKR_KEY_TYPE_INCONSISTENT',
  'CKR_KEY_FUNCTION_NOT_PERMITTED',
  'CKR_KEY_UNEXTRACTABLE',
  'CKR_KEY_NOT_WRAPPABLE',
  'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT',
  'CKR_WRAPPING_KEY_TYPE_INCONSISTENT',
  'CKR_DOMAIN_PARAMS_INVALID',
  'CKR_CURVE_NOT_SUPPORTED',
]);
// Everything after which the only cure is C_Finalize + C_Initialize + C_Login.
classify('device-unavailable', [
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_SLOT_ID_INVALID',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_COUNT',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
]);
// Never retried automatically: retrying a wrong PIN would lock the token.
classify('locked', [
  'CKR_PIN_INCORRECT',
  'CKR_PIN_LOCKED',
  'CKR_PIN_EXPIRED',
  'CKR_PIN_INVALID',
  'CKR_PIN_LEN_RANGE',
  'CKR_USER_PIN_NOT_INITIALIZED',
  'CKR_TOKEN_WRITE_PROTECTED',
]);

const KB_CODE: Record<Pkcs11ErrorKind, ErrorCode> = {
  'not-found': 'NOT_FOUND',
  'invalid-input': 'INVALID_ARGUMENT',
  'device-unavailable': 'HSM_UNAVAILABLE',
  locked: 'HSM_UNAVAILABLE',
  internal: 'INTERNAL',
};

/** A failed Cryptoki call. The message names the CKR code and function only: never PINs or data. */
export class Pkcs11Error extends Error {
  readonly ckr: string;
  readonly code: number;
  readonly fn: string;
  readonly kind: Pkcs11ErrorKind;

  /** `kind` overrides the classification, e.g. when a failed probe shows the token is gone. */
  constructor(ckr: string, code: number, fn: string, kind?: Pkcs11ErrorKind) {
    super(`${fn} failed: ${ckr}`);
    this.name = 'Pkcs11Error';
    this.ckr = ckr;
    this.code = code;
    this.fn = fn;
    this.kind = kind ?? KINDS[ckr] ?? 'internal';
  }

  /** The KbError a caller sees; the CKR name and function go to `detail` (the log) only. */
  toKbError(): KbError {
    return new KbError(KB_CODE[this.kind], undefined, { detail: this.message, cause: this });
  }
}

const CKR_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(pkcs11js)) {
  if (name.startsWith('CKR_') && typeof value === 'number' && !CKR_NAMES.has(value))
    CKR_NAMES.set(value, name);
}

/** The CKR name of a code, e.g. `CKR_GENERAL_ERROR`; vendor codes print as hex. */
export function ckrName(code: number): string {
  return CKR_NAMES.get(code) ?? `CKR_0x${code.toString(16).padStart(8, '0')}`;
}

/** A pkcs11js throw as a Pkcs11Error naming `fn`; errors that carry no CKR code pass through. */
export function toPkcs11Error(err: unknown, fn: string): unknown {
  if (err instanceof Pkcs11Error) return err;
  if (err instanceof pkcs11js.Pkcs11Error) {
    const code = typeof err.code === 'number' ? err.code : 0;
    const name = err.message.startsWith('CKR_') ? err.message : ckrName(code);
    return new Pkcs11Error(name, code, fn);
  }
  return err;
}

/** A synthetic failure, used by fault injection and by checks that find the token missing. */
export function deviceRemoved(fn: string): Pkcs11Error {
  return new Pkcs11Error('CKR_DEVICE_REMOVED', pkcs11js.CKR_DEVICE_REMOVED, fn);
}

/** True when `err` means the module must be re-initialised. */
export function isDeviceUnavailable(err: unknown): boolean {
  return err instanceof Pkcs11Error && err.kind === 'device-unavailable';
}

/** Failures a vanished token produces on SoftHSM-like modules: worth a C_GetTokenInfo probe. */
export function mayHideDeviceLoss(e: unknown): boolean {
  if (e instanceof Pkcs11Error) return e.kind === 'internal' || e.kind === 'not-found';
  return e instanceof KbError && (e.code === 'NOT_FOUND' || e.code === 'INTERNAL');
}

/** Run a sync Cryptoki call, naming the function in any error. */
export function call<T>(fn: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw toPkcs11Error(err, fn);
  }
}

/** Await an async Cryptoki call, naming the function in any error. */
export async function callAsync<T>(fn: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw toPkcs11Error(err, fn);
  }
}
