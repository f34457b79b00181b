/** Maps between blind-index messages (blind_index.proto, admin.proto) and BlindIndexes values. */
import { KbError } from '../errors.ts';
import type { NormalizationStep } from '../keys/blind-index-normalize.ts';
import type { BlindIndexes, BlindIndexInfo } from '../keys/blind-indexes.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';

const STEPS: Readonly<Record<string, NormalizationStep>> = {
  BLIND_INDEX_NORMALIZATION_NFKC: 'nfkc',
  BLIND_INDEX_NORMALIZATION_LOWERCASE: 'lowercase',
  BLIND_INDEX_NORMALIZATION_TRIM: 'trim',
};
const ENUM_OF = new Map(Object.entries(STEPS).map(([k, v]) => [v, k]));

/** The broker's blind indexes (UNIMPLEMENTED for a broker without them, e.g. test fakes). */
export function blindIndexesOf(api: KeyBrokerApi): BlindIndexes {
  const b = (api as KeyBrokerApi & { blindIndexes?: BlindIndexes }).blindIndexes;
  if (b === undefined) throw new KbError('UNIMPLEMENTED', 'blind indexes are not enabled');
  return b;
}

/** A repeated BlindIndexNormalization field: known values only, each at most once. */
export function normalizationField(v: unknown): NormalizationStep[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > 3)
    throw new KbError('INVALID_ARGUMENT', 'normalization must list at most 3 distinct steps');
  const steps = v.map((x) => {
    const s = typeof x === 'string' ? STEPS[x] : undefined;
    if (s === undefined)
      throw new KbError('INVALID_ARGUMENT', 'normalization must be NFKC, LOWERCASE or TRIM');
    return s;
  });
  if (new Set(steps).size !== steps.length)
    throw new KbError('INVALID_ARGUMENT', 'normalization lists a step twice');
  return steps;
}

/** output_bytes: 16 or 32 (0 only where the caller allows "keep"). */
export function outputBytesField(v: unknown, zeroOk: boolean): 16 | 32 | undefined {
  if (v === 16 || v === 32) return v;
  if (zeroOk && (v === 0 || v === undefined)) return undefined;
  throw new KbError('INVALID_ARGUMENT', 'output_bytes must be 16 or 32');
}

export function blindIndexMessage(i: BlindIndexInfo): object {
  return {
    name: i.name,
    primaryVersion: i.primaryVersion,
    minVersion: i.minVersion,
    createTime: i.createdAt,
    versions: i.versions.map((v) => ({
      version: v.version,
      normalization: v.normalization.map((s) => ENUM_OF.get(s)),
      outputBytes: v.outputBytes,
      createTime: v.createdAt,
      searchable: v.searchable,
    })),
  };
}
