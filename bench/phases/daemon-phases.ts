/**
 * The daemon phases. Each starts `keybroker init` + `keybroker serve` afresh (new data dir, new
 * SoftHSM2 token), provisions what its scenarios need through the Admin API, drives the load
 * generator, reads /metrics around each scenario (HSM unwraps and cache misses per request), and
 * stops the daemon with SIGTERM, checking it drains and exits 0. An echo scenario in a daemon
 * phase is paired: each window of a daemon scenario that names it (`pairedEcho`) alternates in
 * slices with a window against the suite's echo server (A B A B ...); an in-process
 * scenario in a daemon phase runs once right before each run of the scenario that names it
 * (`pairedInProcess`).
 */
import { join } from 'node:path';
import { AdminClient, forEachBounded, sumMetric } from '../daemon/admin-client.ts';
import { httpText, initDaemonDir, startDaemon, type RunningDaemon } from '../daemon/daemon-process.ts';
import { CORES } from '../lib/child-process.ts';
import { measureAsync } from '../lib/loop-measure.ts';
import { readCpuSeconds, readPeakRssBytes, resetPeakRss } from '../lib/proc-stats.ts';
import type { RunSample } from '../lib/result-types.ts';
import { probeTls } from '../lib/tls-probe.ts';
import { BENCH_BLIND_INDEX, benchCustomer, benchTenant } from '../load/bench-names.ts';
import type { AlternateTarget, LoadSpec } from '../load/load-spec.ts';
import type { PhaseName, Scenario } from '../scenarios.ts';
import { runInProcessPhase, type EchoServer } from './ceiling-phases.ts';
import type { PhaseContext } from './phase-context.ts';

/** Slices per side when a daemon window alternates with its paired echo (0.5 s each in a full run). */
const PAIRED_SLICES = 4;

const ORG = 'bench';
/** CreateTenant calls in flight while provisioning (each waits on HSM, SQLite and audit I/O). */
const PROVISION_CONCURRENCY = 32;
/** Tenants per CreateTenants call (the RPC's maximum) and calls in flight (one fsyncs, one wraps). */
const BULK_BATCH = 1000;
const BULK_CONCURRENCY = 2;
const TENANT = 'load';

interface PhaseSetup {
  /** KB_* overrides for this phase's daemon. */
  readonly env: Readonly<Record<string, string>>;
  readonly tenants?: number;
  /** The first tenants go through CreateTenant one by one (its rate); the rest through CreateTenants. */
  readonly singleCreates?: number;
  /** Provisioning deadline (tenants created past it are not waited for; the count is reported). */
  readonly provisionS?: number;
}

/**
 * Every phase: the bench measures capacity, so per-identity rate limits are off, and the
 * two-person rule is off so RotateOrgKey/DestroyTenant time the key work, not approvals.
 */
const COMMON_ENV: Readonly<Record<string, string>> = {
  KB_RATE_LIMIT_ENABLED: 'false',
  KB_POLICY_TWO_PERSON_RULE: 'false',
};

const SETUP: Partial<Record<PhaseName, PhaseSetup>> = {
  daemon: { env: {} },
  // A one-entry cache whose entries expire after 1 ms, and traffic spread over 1000 customers:
  // every call misses and unwraps its keys (the TEK in the HSM). /metrics confirms it per run.
  'daemon-cold': { env: { KB_KEYS_CACHE_MAX_ENTRIES: '1', KB_KEYS_CACHE_TTL_MS: '1' } },
  // The default daemon audits every call (fail-closed, group commit); this one does not.
  'daemon-unaudited': { env: { KB_AUDIT_ENABLED: 'false' } },
  // singleCreates as in scenarios.ts (the create-tenant scenario's description names it).
  'daemon-tenants-1k': { env: {}, tenants: 1_000, singleCreates: 200, provisionS: 60 },
  'daemon-tenants-10k': { env: {}, tenants: 10_000, singleCreates: 1_000, provisionS: 120 },
  'daemon-tenants-100k': { env: {}, tenants: 100_000, singleCreates: 1_000, provisionS: 480 },
};

async function scrape(
  d: RunningDaemon,
): Promise<{ rpcs: number; unwraps: number; misses: number } | undefined> {
  try {
    const text = await httpText(d.metricsPort, '/metrics');
    return {
      rpcs: sumMetric(text, 'keybroker_rpc_requests_total'),
      unwraps: sumMetric(text, 'keybroker_hsm_call_duration_seconds_count', 'op="unwrap_key"'),
      misses: sumMetric(text, 'keybroker_key_cache_misses'),
    };
  } catch (err) {
    return void err;
  }
}

/** Admin calls timed like a load window, with the daemon's CPU and peak RSS around them. */
async function measureAdmin(
  d: RunningDaemon,
  concurrency: number,
  count: number,
  deadlineS: number,
  fn: (i: number) => Promise<void>,
  unitsPerCall = 1,
): Promise<RunSample> {
  resetPeakRss(d.pid);
  const cpu0 = readCpuSeconds(d.pid);
  const s = await measureAsync((_w, i) => fn(i), concurrency, {
    durationS: deadlineS,
    minOps: 0,
    maxOps: count,
    unitsPerCall,
  });
  const cpu = readCpuSeconds(d.pid) - cpu0;
  const rss = readPeakRssBytes(d.pid);
  return {
    ...s,
    serverCpuUsPerOp: (cpu * 1e6) / Math.max(1, s.operations),
    ...(rss === undefined ? {} : { peakRssBytes: rss }),
  };
}

async function provisionCustomers(
  ctx: PhaseContext,
  admin: AdminClient,
  scenarios: readonly Scenario[],
): Promise<void> {
  const n = Math.max(0, ...scenarios.map((s) => (s.op?.kind === 'daemon' ? (s.op.customers ?? 0) : 0)));
  if (n === 0) return;
  const t0 = Date.now();
  const done = await forEachBounded(n, 8, Date.now() + 120_000, (i) =>
    admin.createCustomer(ORG, TENANT, benchCustomer(i)),
  );
  ctx.log(`provisioned ${done} customers in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (done < n) throw new Error(`only ${done} of ${n} customers provisioned in 120 s`);
}

/**
 * The phase's tenant population: the first `singleCreates` through CreateTenant (32 in flight),
 * the rest through CreateTenants (BULK_BATCH per call, BULK_CONCURRENCY in flight), each timed as
 * its own scenario. Returns how many tenants exist (a deadline may cut provisioning short).
 */
async function provisionTenants(
  ctx: PhaseContext,
  d: RunningDaemon,
  admin: AdminClient,
  setup: PhaseSetup,
  scenarios: readonly Scenario[],
): Promise<number> {
  const n = setup.tenants ?? 0;
  const single = Math.min(n, setup.singleCreates ?? n);
  const budgetS = setup.provisionS ?? 300;
  const t0 = Date.now();
  const one = await measureAdmin(d, PROVISION_CONCURRENCY, single, budgetS, (i) =>
    admin.createTenant(ORG, benchTenant(i)),
  );
  ctx.log(`provisioned ${one.operations} tenants one by one at ${Math.round(one.throughput)}/s`);
  const create = scenarios.find((s) => s.admin === 'create-tenant');
  if (create) ctx.addRun(create.name, PROVISION_CONCURRENCY, one);
  if (one.operations < single) {
    if (create) ctx.note(create.name, `only ${one.operations} of ${single} tenants within ${budgetS} s`);
    return one.operations;
  }
  const rest = n - single;
  const batch = Math.min(BULK_BATCH, rest);
  if (batch <= 0) return single;
  const calls = Math.ceil(rest / batch);
  const leftS = Math.max(10, budgetS - (Date.now() - t0) / 1000);
  let created = 0;
  const bulk = await measureAdmin(
    d,
    BULK_CONCURRENCY,
    calls,
    leftS,
    async (c) => {
      const first = single + c * batch;
      const names = Array.from({ length: Math.min(batch, n - first) }, (_, k) => benchTenant(first + k));
      // Not `created += await ...`: that reads `created` before the await and loses updates.
      const k = await admin.createTenants(ORG, names);
      created += k;
    },
    batch,
  );
  ctx.log(
    `provisioned ${created} tenants in ${bulk.operations / batch} CreateTenants calls at ${Math.round(created / bulk.durationS)}/s`,
  );
  const bulkScenario = scenarios.find((s) => s.admin === 'create-tenants-bulk');
  if (bulkScenario) {
    // Units were counted per call (batch each); report the tenants actually created.
    ctx.addRun(bulkScenario.name, BULK_CONCURRENCY, {
      ...bulk,
      operations: created,
      throughput: created / bulk.durationS,
      serverCpuUsPerOp: ((bulk.serverCpuUsPerOp ?? 0) * bulk.operations) / Math.max(1, created),
    });
    if (created < rest)
      ctx.note(bulkScenario.name, `only ${created} of ${rest} tenants within the provisioning budget`);
  }
  // Calls start in order and every started call completes: the tenants are still numbered densely.
  return single + created;
}

/** Run every selected scenario of one daemon phase. */
export async function runDaemonPhase(
  ctx: PhaseContext,
  phase: PhaseName,
  scenarios: readonly Scenario[],
  unavailable: string | undefined,
  echo: EchoServer | { error: string },
): Promise<void> {
  if (scenarios.length === 0) return;
  const setup = SETUP[phase];
  if (unavailable !== undefined || setup === undefined) {
    ctx.markMissing(scenarios, unavailable ?? `no setup for phase ${phase}`);
    return;
  }
  if (ctx.overBudget()) {
    ctx.markMissing(scenarios, 'suite time budget exhausted');
    return;
  }
  const repo = ctx.o.repoRoot;
  const protoDir = join(repo, 'proto');
  let d: RunningDaemon;
  try {
    ctx.log(`${phase}: keybroker init (fresh SoftHSM2 token) + serve`);
    const dir = await initDaemonDir(repo, join(ctx.o.workDir, phase), ORG, TENANT);
    d = await startDaemon(repo, dir, { core: CORES.server, env: { ...COMMON_ENV, ...setup.env } });
  } catch (err) {
    ctx.markMissing(scenarios, `daemon did not start: ${(err as Error).message.slice(0, 400)}`);
    return;
  }
  const pki = d.dir.pki;
  const admin = new AdminClient(
    d.grpcPort,
    { caCert: pki.caCert, cert: pki.adminCert, key: pki.adminKey },
    protoDir,
  );
  const pending = new Set(scenarios.map((s) => s.name));
  try {
    ctx.tls[phase] = await probeTls(d.grpcPort, {
      caCert: pki.caCert,
      cert: pki.serviceCert,
      key: pki.serviceKey,
    });
    await provisionCustomers(ctx, admin, scenarios);
    if (scenarios.some((s) => s.op?.kind === 'blind-index'))
      await admin.createBlindIndex(ORG, TENANT, BENCH_BLIND_INDEX, 32);
    const tenants = setup.tenants === undefined ? 0 : await provisionTenants(ctx, d, admin, setup, scenarios);
    for (const s of scenarios)
      if (s.admin === 'create-tenant' || s.admin === 'create-tenants-bulk') pending.delete(s.name);
    const rotation =
      setup.tenants === undefined
        ? undefined
        : {
            caCert: pki.caCert,
            caKey: pki.caKey,
            org: ORG,
            tenants,
            identities: Math.min(tenants, ctx.o.quick ? 300 : 1500),
            callsPerConnection: ctx.o.quick ? 10 : 25,
          };
    const target = {
      port: d.grpcPort,
      serverPid: d.pid,
      protoDir,
      maxChannels: rotation ? 16 : 4,
      tls: {
        caCert: pki.caCert,
        identities: [{ cert: pki.serviceCert, key: pki.serviceKey }],
        serverNameOverride: 'localhost',
      },
    };
    // HSM unwraps and cache misses per request, summed over every window of a scenario.
    const perScenario = new Map<string, { rpcs: number; unwraps: number; misses: number }>();
    const measure = async (s: Scenario, extra: Partial<LoadSpec> = {}): Promise<boolean> => {
      const before = await scrape(d);
      const ok = await ctx.runLoad(s, target, { ...(rotation ? { rotation } : {}), ...extra });
      const after = await scrape(d);
      if (before && after) {
        const acc = perScenario.get(s.name) ?? { rpcs: 0, unwraps: 0, misses: 0 };
        acc.rpcs += after.rpcs - before.rpcs;
        acc.unwraps += after.unwraps - before.unwraps;
        acc.misses += after.misses - before.misses;
        perScenario.set(s.name, acc);
      }
      return ok;
    };

    // Echo windows paired with daemon scenarios: for each run and concurrency, each daemon
    // window alternates in slices with an echo window (A B A B ...), so both read the same
    // seconds of the host; the echo's runs are recorded under the paired echo's name.
    const paired = new Set<string>();
    for (const e of scenarios) {
      const op = e.op;
      if (op?.kind !== 'echo') continue;
      pending.delete(e.name);
      const members = scenarios.filter((x) => x.pairedEcho === e.name && x.op !== undefined);
      if ('error' in echo) {
        ctx.markMissing([e], echo.error);
        continue;
      }
      const live = new Set(members.map((m) => m.name));
      for (const m of members) {
        paired.add(m.name);
        pending.delete(m.name);
      }
      if (members.length === 0) {
        await ctx.runLoad(e, echo.target); // selected alone: measured on its own
        continue;
      }
      const alternate: AlternateTarget = {
        scenario: e.name,
        target: `127.0.0.1:${echo.target.port}`,
        tls: echo.target.tls,
        op,
        serverPid: echo.target.serverPid,
        slices: PAIRED_SLICES,
      };
      for (let run = 0; run < ctx.o.runs; run++) {
        for (const c of ctx.concurrencies(e)) {
          for (const m of members)
            if (live.has(m.name) && ctx.concurrencies(m).includes(c))
              if (!(await measure(m, { concurrencies: [c], runs: 1, alternate }))) live.delete(m.name);
        }
      }
    }
    // In-process ceilings paired with daemon scenarios: one window right before each run.
    const inProcessOf = new Map(scenarios.filter((x) => x.inProcess !== undefined).map((x) => [x.name, x]));
    for (const s of scenarios.filter(
      (x) => x.op !== undefined && x.op.kind !== 'echo' && !paired.has(x.name),
    )) {
      pending.delete(s.name);
      const ip = s.pairedInProcess === undefined ? undefined : inProcessOf.get(s.pairedInProcess);
      if (ip === undefined) {
        await measure(s);
        continue;
      }
      pending.delete(ip.name);
      for (let run = 0; run < ctx.o.runs; run++) {
        await runInProcessPhase(ctx, [ip], 1);
        if (!(await measure(s, { runs: 1 }))) break;
      }
    }
    for (const [name, acc] of perScenario) {
      if (acc.rpcs <= 0) continue;
      const per = (x: number): string => (x / acc.rpcs).toFixed(2);
      ctx.note(
        name,
        `per request (all windows, from /metrics): ${per(acc.unwraps)} HSM unwraps, ${per(acc.misses)} key-cache misses`,
      );
    }
    await runAdminScenarios(ctx, d, admin, scenarios, tenants, pending);
  } catch (err) {
    ctx.markMissing(
      [...pending].filter((n) => !ctx.runs.has(n)),
      `${phase} failed: ${(err as Error).message.slice(0, 400)}`,
    );
  } finally {
    admin.close();
    const code = await d.stop();
    if (code !== 0) {
      for (const s of scenarios) ctx.note(s.name, `daemon exited ${code} on SIGTERM`);
      ctx.log(`${phase}: daemon exited ${code} on SIGTERM: ${d.stderr().slice(-400)}`);
    }
  }
}

/** OEK rotation and tenant destruction at the phase's tenant count. */
async function runAdminScenarios(
  ctx: PhaseContext,
  d: RunningDaemon,
  admin: AdminClient,
  scenarios: readonly Scenario[],
  tenants: number,
  pending: Set<string>,
): Promise<void> {
  // Each of these rewraps every tenant key in the HSM (seconds at 10,000 tenants, ~35-70 s at
  // 100,000): two runs, not three, and one at 100,000 to stay in the 30-minute budget.
  const adminRuns = Math.min(ctx.o.runs, tenants >= 50_000 ? 1 : 2);
  const rotate = scenarios.find((s) => s.admin === 'rotate-org-key');
  if (rotate) {
    pending.delete(rotate.name);
    for (let run = 0; run < adminRuns; run++) {
      const sample = await measureAdmin(d, 1, 1, 600, () => admin.rotateOrgKey(ORG));
      ctx.addRun(rotate.name, 1, sample);
      ctx.log(`${rotate.name} run ${run + 1}: ${(sample.p50Us / 1e6).toFixed(2)} s with ${tenants} tenants`);
    }
  }
  const destroy = scenarios.find((s) => s.admin === 'destroy-tenant');
  if (destroy) {
    pending.delete(destroy.name);
    // Destroy from the end of the population so the traffic above keeps its tenants.
    let victim = tenants - 1;
    for (const c of ctx.concurrencies(destroy)) {
      for (let run = 0; run < adminRuns; run++) {
        const first = victim - c + 1;
        victim -= c;
        if (first < 1) throw new Error('not enough tenants left to destroy');
        const sample = await measureAdmin(d, c, c, 600, (i) =>
          admin.destroyTenant(ORG, benchTenant(first + i)),
        );
        ctx.addRun(destroy.name, c, sample);
        ctx.log(`${destroy.name} c=${c} run ${run + 1}: ${c} destroys in ${sample.durationS.toFixed(2)} s`);
      }
    }
  }
}
