/**
 * `--merge BASE.json`: a re-run of some scenarios folded into an earlier result. Records of the
 * re-run scenarios replace the base's, ratios and targets are recomputed, and `merged` says
 * which scenarios were measured when, so a reader can see the numbers did not all come from
 * one run.
 */
import { attachRatios, type RecordMeta } from './aggregate.ts';
import type { ResultsFile } from './result-types.ts';
import { evaluateTargets } from './targets.ts';

/**
 * `base` with the records (and missing entries) of `next` for the scenarios `next` measured, and
 * `next`'s delegated scripts in place of the base's runs of the same scripts.
 */
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
  const rerun = new Map(next.delegated.map((d) => [d.script, d]));
  const delegated = [
    ...base.delegated.map((d) => rerun.get(d.script) ?? d),
    ...next.delegated.filter((d) => !base.delegated.some((b) => b.script === d.script)),
  ];
  return {
    ...base,
    tls: { ...base.tls, ...next.tls },
    records,
    targets: evaluateTargets(records),
    delegated,
    missing: [...base.missing.filter((m) => !redone.has(m.scenario)), ...next.missing],
    merged: [
      ...(base.merged ?? []),
      {
        scenarios: [...redone, ...rerun.keys()].sort(),
        startedAt: next.startedAt,
        git: next.git,
        loadAverage: next.loadAverage,
      },
    ],
  };
}
