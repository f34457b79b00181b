/**
 * The one input check of the pqc library. Every failure is a KbError INVALID_ARGUMENT whose
 * safe message names the parameter and the expected shape, never the bytes themselves.
 */
import { KbError } from '../errors.ts';

/** Upper bound for any message or plaintext handed to a pqc primitive (64 MiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Assert `value` is a Uint8Array (a Buffer counts) of exactly `length` bytes, or within
 * [min, max]. Returns the value typed, so calls read `const pk = assertBytes('publicKey', x, 1184)`.
 */
export function assertBytes(
  name: string,
  value: unknown,
  length?: number | { readonly min?: number; readonly max?: number },
): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new KbError('INVALID_ARGUMENT', `${name} must be a Uint8Array`);
  }
  if (typeof length === 'number') {
    if (value.length !== length) {
      throw new KbError('INVALID_ARGUMENT', `${name} must be ${length} bytes, got ${value.length}`);
    }
  } else {
    const min = length?.min ?? 0;
    const max = length?.max ?? MAX_MESSAGE_BYTES;
    if (value.length < min || value.length > max) {
      throw new KbError('INVALID_ARGUMENT', `${name} must be ${min}..${max} bytes, got ${value.length}`);
    }
  }
  return value;
}

/** Assert `value` is an integer count in [0, max]. */
export function assertCount(name: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new KbError('INVALID_ARGUMENT', `${name} must be an integer 0..${max}`);
  }
  return value;
}

/** Assert `value` is one of `allowed`; the message lists the allowed names. */
export function assertOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new KbError('INVALID_ARGUMENT', `${name} must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

/** A copy in a plain Uint8Array (not a Buffer view on a shared pool), for APIs that reject Buffer. */
export function plainCopy(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}
