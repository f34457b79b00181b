/**
 * From raw runs to records: one ScenarioRecord per scenario × concurrency with medians and
 * spreads, then the throughput ratios to the ceilings measured in the same run.
 */
import type { RunSample, ScenarioRecord } from './result-types.ts';
import { summarizeRuns } from './stats.ts';

/** The catalogue facts a record carries (a subset of Scenario, so this file stays pure). */
export interface RecordMeta {
  readonly name: string;
  readonly kind: ScenarioRecord['kind'];
  readonly group: string;
  readonly description: string;
  readonly unit: string;
  readonly payloadBytes: number;
  readonly phase: string;
  readonly ceilings?: { readonly echo?: string; readonly inProcess?: string; readonly pkcs11?: string };
  /** An echo measured beside this scenario's windows; its ceiling when the run has it. */
  readonly pairedEcho?: string;
  /** An in-process ceiling measured beside this scenario's runs; preferred when the run has it. */
  readonly pairedInProcess?: string;
}

/** A record from the runs of one scenario at one concurrency. */
export function buildRecord(
  meta: RecordMeta,
  concurrency: number,
  runs: readonly RunSample[],
  notes?: string,
): ScenarioRecord {
  const errors = runs.reduce((a, r) => a + r.errors, 0);
  const allNotes = [notes, errors > 0 ? `${errors} failed calls` : undefined].filter((x) => x !== undefined);
  return {
    scenario: meta.name,
    kind: meta.kind,
    group: meta.group,
    description: meta.description,
    phase: meta.phase,
    concurrency,
    unit: meta.unit,
    payloadBytes: meta.payloadBytes,
    runs,
    ...summarizeRuns(runs),
    ...(allNotes.length > 0 ? { notes: allNotes.join('; ') } : {}),
  };
}

/**
 * Ceiling throughput for a record: the echo at the same concurrency (or the nearest measured
 * one below it), the single-core in-process rate, the best raw PKCS#11 rate.
 */
function ceilingThroughput(
  records: readonly ScenarioRecord[],
  name: string,
  concurrency: number,
): number | undefined {
  const same = records.filter((r) => r.scenario === name);
  if (same.length === 0) return undefined;
  const exact = same.find((r) => r.concurrency === concurrency);
  if (exact) return exact.throughput.median;
  if (same[0]?.kind === 'ceiling-echo') {
    const below = same
      .filter((r) => r.concurrency <= concurrency)
      .sort((a, b) => b.concurrency - a.concurrency)[0];
    return below?.throughput.median;
  }
  return Math.max(...same.map((r) => r.throughput.median));
}

/** Records with `ratios` filled from the ceilings named in `metas`. */
export function attachRatios(
  records: readonly ScenarioRecord[],
  metas: readonly RecordMeta[],
): ScenarioRecord[] {
  const byName = new Map(metas.map((m) => [m.name, m]));
  return records.map((r) => {
    const m = byName.get(r.scenario);
    const c = m?.ceilings;
    if (c === undefined) return r;
    const ratios: Record<string, number> = {};
    for (const [label, name] of [
      ['echo', c.echo],
      ['inProcess', c.inProcess],
      ['pkcs11', c.pkcs11],
    ] as const) {
      if (name === undefined) continue;
      // A ceiling measured beside this scenario (same minute) wins over its own phase's, minutes
      // away on a host whose speed drifts.
      const pairedName =
        label === 'echo' ? m?.pairedEcho : label === 'inProcess' ? m?.pairedInProcess : undefined;
      const t =
        (pairedName !== undefined ? ceilingThroughput(records, pairedName, r.concurrency) : undefined) ??
        ceilingThroughput(records, name, r.concurrency);
      if (t !== undefined && t > 0) ratios[label] = r.throughput.median / t;
    }
    return Object.keys(ratios).length > 0 ? { ...r, ceilingsOf: c, ratios } : { ...r, ceilingsOf: c };
  });
}
