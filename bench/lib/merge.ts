/**
 * `--merge BASE.json`: a re-run of some scenarios folded into an earlier result. Records of the
 * re-run scenarios replace the base's, ratios and targets are recomputed, and `merged` says
 * which scenarios were measured when, so a reader can see the numbers did not all come from
 * one run.
 */
import { attachRatios, type RecordMeta } from './aggregate.ts';
import type { ResultsFile } from './result-types.ts';
import { evaluateTargets } from './targets.ts';

/** `base` with the records (and missing entries) of `next` for the scenarios `next` measured. */
export function mergeResults(
  base: ResultsFile,
  next: ResultsFile,
  metas: readonly RecordMeta[],
): ResultsFile {
  const redone = new Set([...next.records.map((r) => r.scenario), ...next.missing.map((m) => m.scenario)]);
  const records = attachRatios(
    [...base.records.filter((r) => !redone.has(r.scenario)), ...next.records],
    metas,
  );
  return {
    ...base,
    tls: { ...base.tls, ...next.tls },
    records,
    targets: evaluateTargets(records),
    delegated: next.delegated.length > 0 ? next.delegated : base.delegated,
    missing: [...base.missing.filter((m) => !redone.has(m.scenario)), ...next.missing],
    merged: [
      ...(base.merged ?? []),
      {
        scenarios: [...redone].sort(),
        startedAt: next.startedAt,
        git: next.git,
        loadAverage: next.loadAverage,
      },
    ],
  };
}
