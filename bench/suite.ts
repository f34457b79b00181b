/**
 * The whole suite: phases in order (ceilings first, then one fresh daemon per daemon phase),
 * then the per-area scripts, then records, ratios and targets. Failures become "missing"
 * entries with their reason; the suite itself only fails on a bug in the harness.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { daemonUnavailableReason } from './daemon/daemon-process.ts';
import { attachRatios, buildRecord } from './lib/aggregate.ts';
import { CORES } from './lib/child-process.ts';
import { DELEGATED_SCRIPTS, delegateTimeoutMs, runDelegate } from './lib/delegates.ts';
import { gitRevision, machineInfo } from './lib/machine-info.ts';
import {
  RESULTS_SCHEMA,
  type DelegatedResult,
  type ResultsFile,
  type ScenarioRecord,
} from './lib/result-types.ts';
import { evaluateTargets } from './lib/targets.ts';
import {
  runEchoPhase,
  runInProcessPhase,
  runPkcs11Phase,
  startEchoServer,
  type EchoServer,
} from './phases/ceiling-phases.ts';
import { runDaemonPhase } from './phases/daemon-phases.ts';
import { PhaseContext, type SuiteOptions } from './phases/phase-context.ts';
import { PHASES, SCENARIOS, selectScenarios } from './scenarios.ts';

/** Whether `--only` asks for the per-area scripts (all of them when there is no --only). */
function delegatesWanted(only: readonly string[] | undefined): (typeof DELEGATED_SCRIPTS)[number][] {
  if (only === undefined) return [...DELEGATED_SCRIPTS];
  return DELEGATED_SCRIPTS.filter((s) =>
    only.some((o) => o === 'delegated' || o === s || o === s.replace(/\.ts$/, '') || o === 'delegated*'),
  );
}

/** Daemon capabilities the catalogue cannot measure yet, each with the reason and the stand-in. */
function structuralGaps(repoRoot: string): { scenario: string; reason: string }[] {
  const out: { scenario: string; reason: string }[] = [];
  // The pqc-* scenarios cover KEM decapsulation/encapsulation and signing; sealed boxes, the
  // other ML-DSA/ML-KEM sizes and Ed25519/ECDSA are left to bench/pqc-bench.ts.
  out.push({
    scenario: 'sealed boxes, ML-KEM-1024, ML-DSA-44/87, Ed25519 through the daemon',
    reason: existsSync(join(repoRoot, 'proto/keybroker/v1/keys.proto'))
      ? 'not in this catalogue; bench/pqc-bench.ts measures every operation in-process and through its worker pool (see below)'
      : 'the Keys service is not in proto/ yet; bench/pqc-bench.ts is run instead (see below)',
  });
  const schema = join(repoRoot, 'daemon/src/config/config-schema.ts');
  const hasAuditSwitch = existsSync(schema) && /\baudit\s*:/.test(readFileSync(schema, 'utf8'));
  if (!hasAuditSwitch) {
    out.push({
      scenario: 'audited vs unaudited Encrypt',
      reason:
        'the daemon config has no audit sink setting to switch yet; bench/audit-bench.ts is run instead (see below)',
    });
  }
  return out;
}

export async function runSuite(o: SuiteOptions): Promise<ResultsFile> {
  const startedAt = new Date();
  const loadAtStart = loadavg()[0] ?? 0;
  const ctx = new PhaseContext(o);
  const selected = selectScenarios(o.only, o.quick);
  const inPhase = (p: string) => selected.filter((s) => s.phase === p);
  ctx.log(
    `${o.quick ? 'quick' : 'full'} run: ${selected.length} scenarios, ${o.runs} run(s) each; pinned: ${CORES.pinned}`,
  );

  await runInProcessPhase(ctx, inPhase('in-process'));
  await runPkcs11Phase(ctx, inPhase('pkcs11'));
  // One echo server for the echo phase and for the echo windows paired with daemon scenarios.
  const wantsEcho =
    inPhase('echo').length > 0 || selected.some((s) => s.phase !== 'echo' && s.op?.kind === 'echo');
  const echo: EchoServer | { error: string } = wantsEcho
    ? await startEchoServer(ctx)
    : { error: 'no echo scenario selected' };
  try {
    await runEchoPhase(ctx, inPhase('echo'), echo);
    const daemonPhases = PHASES.filter((p) => p.startsWith('daemon') && inPhase(p).length > 0);
    const unavailable = daemonPhases.length > 0 ? daemonUnavailableReason(o.repoRoot) : undefined;
    for (const p of daemonPhases) await runDaemonPhase(ctx, p, inPhase(p), unavailable, echo);
  } finally {
    if (!('error' in echo)) await echo.stop();
  }
  if (o.only === undefined) ctx.missing.push(...structuralGaps(o.repoRoot));

  const delegated: DelegatedResult[] = [];
  const scripts = delegatesWanted(o.only);
  for (const [i, script] of scripts.entries()) {
    // What is left of the budget is shared by the scripts still to run.
    const left = o.budgetMs - (Date.now() - ctx.startedMs);
    const timeoutMs = delegateTimeoutMs(scripts.slice(i), left, o.quick);
    ctx.log(`delegated ${script} (timeout ${Math.round(timeoutMs / 1000)} s)`);
    const r = await runDelegate(join(o.repoRoot, 'bench'), script, { quick: o.quick, timeoutMs });
    ctx.log(`delegated ${script}: ${r.status}, ${r.records.length} records, ${r.durationS.toFixed(1)} s`);
    delegated.push(r);
  }

  const records: ScenarioRecord[] = [];
  for (const s of selected) {
    const byC = ctx.runs.get(s.name);
    if (!byC) continue;
    const notes = ctx.notes.get(s.name);
    for (const c of [...byC.keys()].sort((a, b) => a - b)) {
      records.push(buildRecord(s, c, byC.get(c) ?? [], notes?.join('; ')));
    }
  }
  const withRatios = attachRatios(records, SCENARIOS);
  const finishedAt = new Date();
  return {
    schema: RESULTS_SCHEMA,
    mode: o.quick ? 'quick' : 'full',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    git: gitRevision(o.repoRoot),
    machine: machineInfo(CORES.pinned),
    loadAverage: { atStart: loadAtStart, atEnd: loadavg()[0] ?? 0 },
    tls: ctx.tls,
    records: withRatios,
    targets: evaluateTargets(withRatios),
    delegated,
    missing: ctx.missing,
  };
}
