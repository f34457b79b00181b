/**
 * Normalization of a blind index's input before the HMAC, so that equal values (in the index's
 * sense) give equal tokens: Unicode NFKC, then lowercase, then trim, each when the index asks.
 * The steps are a bit set stored with each index version; a version's steps never change.
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { KbError } from '../errors.ts';

export const NORMALIZE = { nfkc: 1, lowercase: 2, trim: 4 } as const;
export type NormalizationStep = keyof typeof NORMALIZE;
const ALL = NORMALIZE.nfkc | NORMALIZE.lowercase | NORMALIZE.trim;

/** The bit set of `steps` (order does not matter: they always run NFKC, lowercase, trim). */
export function normalizationBits(steps: readonly NormalizationStep[]): number {
  let bits = 0;
  for (const s of steps) bits |= NORMALIZE[s];
  return bits;
}

/** The steps of a bit set, in the order they run. */
export function normalizationSteps(bits: number): NormalizationStep[] {
  return (Object.keys(NORMALIZE) as NormalizationStep[]).filter((s) => (bits & NORMALIZE[s]) !== 0);
}

/**
 * The bytes the HMAC sees. Without steps the input as given; with any step the input must be
 * UTF-8 (INVALID_ARGUMENT otherwise, never echoing it).
 */
export function normalizeIndexInput(value: Uint8Array, bits: number): Uint8Array {
  if ((bits & ~ALL) !== 0) throw new RangeError('unknown normalization bits');
  if (bits === 0) return value;
  if (!isUtf8(value))
    throw new KbError('INVALID_ARGUMENT', 'value must be UTF-8 for an index that normalizes');
  let s = Buffer.from(value.buffer, value.byteOffset, value.length).toString('utf8');
  if (bits & NORMALIZE.nfkc) s = s.normalize('NFKC');
  // Locale-independent lowercase (toLowerCase, not toLocaleLowerCase): the token must not
  // depend on where the daemon runs.
  if (bits & NORMALIZE.lowercase) s = s.toLowerCase();
  if (bits & NORMALIZE.trim) s = s.trim();
  return Buffer.from(s, 'utf8');
}
