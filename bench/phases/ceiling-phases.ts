/**
 * The ceilings, measured in the same run as the daemon: in-process crypto and raw PKCS#11 in a
 * child pinned to the server core, and the gRPC echo server (same mTLS, payloads and client).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { InProcessSpec } from '../ceilings/in-process-crypto.ts';
import type { RawPkcs11Spec } from '../ceilings/raw-pkcs11.ts';
import { CORES, JsonLineChild, NODE, isEvent } from '../lib/child-process.ts';
import { writeTlsMaterial } from '../lib/tls-material.ts';
import { probeTls } from '../lib/tls-probe.ts';
import type { ClientTls, RunLine } from '../load/load-spec.ts';
import type { Scenario } from '../scenarios.ts';
import type { PhaseContext } from './phase-context.ts';

const isRun = (v: unknown): v is RunLine => (v as RunLine | undefined)?.type === 'run';

async function collect(
  ctx: PhaseContext,
  child: JsonLineChild,
  expected: number,
  what: string,
): Promise<void> {
  for (let i = 0; i < expected; i++) {
    const line = await child.waitFor(isRun, 600_000, `${what} run ${i + 1}`);
    const name = line.scenario ?? what;
    ctx.addRun(name, line.concurrency, line.sample);
    ctx.log(
      `${name} c=${line.concurrency} run ${line.run + 1}: ${Math.round(line.sample.throughput).toLocaleString('en-US')}/s, CPU ${line.sample.clientCpuUsPerOp.toFixed(1)} µs/op`,
    );
  }
  await child.waitExit(30_000);
}

/** The in-process ceilings (crypto, the 64 MiB stream, PQC), one core; `runs` each. */
export async function runInProcessPhase(
  ctx: PhaseContext,
  scenarios: readonly Scenario[],
  runs = ctx.o.runs,
): Promise<void> {
  const ops = scenarios.flatMap((s) => (s.inProcess ? [s.inProcess] : []));
  if (ops.length === 0) return;
  const t = ctx.timing;
  const spec: InProcessSpec = {
    ops,
    runs,
    warmupS: t.warmupS,
    durationS: t.durationS,
    maxOps: t.maxCalls,
  };
  const child = new JsonLineChild(
    'in-process ceilings',
    [NODE, join(ctx.o.repoRoot, 'bench/ceilings/in-process-crypto.ts'), ctx.writeSpec('in-process', spec)],
    {
      core: CORES.server,
    },
  );
  try {
    await collect(ctx, child, ops.length * runs, 'in-process');
  } catch (err) {
    await child.stop(2000);
    ctx.markMissing(
      scenarios.filter((s) => !ctx.runs.has(s.name)),
      `in-process ceiling failed: ${(err as Error).message}`,
    );
  }
}

/** Raw pkcs11js calls on a fresh SoftHSM2 token. */
export async function runPkcs11Phase(ctx: PhaseContext, scenarios: readonly Scenario[]): Promise<void> {
  if (scenarios.length === 0) return;
  const dir = join(ctx.o.workDir, 'pkcs11-token');
  const pin = randomBytes(8).toString('hex');
  let conf: string;
  try {
    conf = execFileSync(join(ctx.o.repoRoot, 'softhsm-fixtures/create-token.sh'), [dir, 'kb-bench-raw'], {
      encoding: 'utf8',
      env: { ...process.env, KB_SO_PIN: randomBytes(8).toString('hex'), KB_USER_PIN: pin },
    }).trim();
  } catch (err) {
    ctx.markMissing(scenarios, `cannot create a SoftHSM2 token: ${(err as Error).message}`);
    return;
  }
  const asyncC = scenarios.find((s) => s.name === 'pkcs11-unwrap-async');
  const t = ctx.timing;
  const spec: RawPkcs11Spec = {
    module: '/usr/lib/softhsm/libsofthsm2.so',
    tokenLabel: 'kb-bench-raw',
    pin,
    runs: ctx.o.runs,
    warmupS: t.warmupS,
    durationS: t.durationS,
    maxOps: t.maxCalls,
    asyncConcurrencies: asyncC ? ctx.concurrencies(asyncC) : [],
  };
  const child = new JsonLineChild(
    'raw PKCS#11 ceilings',
    [NODE, join(ctx.o.repoRoot, 'bench/ceilings/raw-pkcs11.ts'), ctx.writeSpec('pkcs11', spec)],
    {
      core: CORES.server,
      env: { ...process.env, SOFTHSM2_CONF: conf },
    },
  );
  // The script measures all four; runs of unselected ones are dropped when records are built.
  const expected = (3 + spec.asyncConcurrencies.length) * ctx.o.runs;
  try {
    await collect(ctx, child, expected, 'pkcs11');
  } catch (err) {
    await child.stop(2000);
    ctx.markMissing(
      scenarios.filter((s) => !ctx.runs.has(s.name)),
      `raw PKCS#11 ceiling failed: ${(err as Error).message}`,
    );
  }
}

/** A running echo server and how the load generator reaches it. */
export interface EchoServer {
  readonly target: { port: number; serverPid: number; tls: ClientTls };
  stop(): Promise<void>;
}

/** Start the echo server (pinned to the server core, like the daemon) with its own PKI, or say why not. */
export async function startEchoServer(ctx: PhaseContext): Promise<EchoServer | { error: string }> {
  const tls = await writeTlsMaterial(join(ctx.o.workDir, 'echo-pki'));
  const server = new JsonLineChild(
    'echo server',
    [
      NODE,
      join(ctx.o.repoRoot, 'bench/echo/echo-server.ts'),
      '--ca',
      tls.caCert,
      '--cert',
      tls.serverCert,
      '--key',
      tls.serverKey,
    ],
    { core: CORES.server },
  );
  try {
    const { port } = await server.waitFor(
      isEvent<{ event: string; port: number }>('listening'),
      30_000,
      'listening',
    );
    ctx.tls.echo = await probeTls(port, { caCert: tls.caCert, cert: tls.clientCert, key: tls.clientKey });
    return {
      target: {
        port,
        serverPid: server.pid,
        tls: {
          caCert: tls.caCert,
          identities: [{ cert: tls.clientCert, key: tls.clientKey }],
          serverNameOverride: 'localhost',
        },
      },
      stop: () => server.stop(),
    };
  } catch (err) {
    await server.stop();
    return { error: `echo server failed: ${(err as Error).message}` };
  }
}

/** One load-generator process per echo scenario, against the running echo server. */
export async function runEchoPhase(
  ctx: PhaseContext,
  scenarios: readonly Scenario[],
  echo: EchoServer | { error: string },
): Promise<void> {
  if (scenarios.length === 0) return;
  if ('error' in echo) {
    ctx.markMissing(scenarios, echo.error);
    return;
  }
  if (process.env.KB_BENCH_INJECT_DELAY_US)
    ctx.note('echo', `KB_BENCH_INJECT_DELAY_US=${process.env.KB_BENCH_INJECT_DELAY_US}`);
  for (const s of scenarios) {
    await ctx.runLoad(s, echo.target);
    if (process.env.KB_BENCH_INJECT_DELAY_US)
      ctx.note(s.name, `server slowed by KB_BENCH_INJECT_DELAY_US=${process.env.KB_BENCH_INJECT_DELAY_US}`);
  }
}
