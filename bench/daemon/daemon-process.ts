/**
 * The daemon as the bench drives it: `keybroker init` into a fresh temp data dir (its own CA,
 * certificates and SoftHSM2 token, so every phase starts on a fresh token), then `keybroker
 * serve` as a real child process pinned to the server core, with ports 0 read back from the
 * ready file and readiness from /readyz. Config differences per phase come as KB_* variables.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { DAEMON_NODE_FLAGS } from '../../daemon/src/cli/daemon-node-flags.ts';
import { JsonLineChild, NODE } from '../lib/child-process.ts';

/** The files `keybroker init` writes under pki/. */
export interface DaemonPki {
  readonly caCert: string;
  readonly caKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly serviceCert: string;
  readonly serviceKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

export interface DaemonDir {
  readonly dataDir: string;
  readonly configFile: string;
  readonly org: string;
  /** The sample tenant `init` bootstraps (the service certificate's tenant). */
  readonly tenant: string;
  readonly pki: DaemonPki;
}

export interface RunningDaemon {
  readonly dir: DaemonDir;
  readonly pid: number;
  readonly grpcPort: number;
  readonly metricsPort: number;
  /** Last lines of the daemon's stderr (for failure reports). */
  stderr(): string;
  /** SIGTERM and wait for the drain; SIGKILL after `graceMs`. Returns the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/** The keybroker CLI entry; KB_BENCH_CLI points the bench at another tree (an installed one). */
const cli = (repoRoot: string): string =>
  process.env.KB_BENCH_CLI ?? join(repoRoot, 'daemon/src/cli/main.ts');

/** Why the daemon cannot be benchmarked from this checkout, or undefined when it can. */
export function daemonUnavailableReason(repoRoot: string): string | undefined {
  if (!existsSync(cli(repoRoot))) return `${cli(repoRoot)} is missing`;
  for (const cmd of ['init', 'serve']) {
    const r = spawnSync(NODE, [cli(repoRoot), cmd, '--help'], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) {
      const why = (r.stderr || r.stdout || '').trim().split('\n').slice(-1)[0] ?? '';
      return `\`keybroker ${cmd}\` is not available yet (${why.slice(0, 160)})`;
    }
  }
  return undefined;
}

/** `keybroker init` into `dataDir` (which must not exist yet). */
export async function initDaemonDir(
  repoRoot: string,
  dataDir: string,
  org: string,
  tenant: string,
): Promise<DaemonDir> {
  const args = [
    cli(repoRoot),
    'init',
    '--data-dir',
    dataDir,
    '--org',
    org,
    '--tenant',
    tenant,
    '--service',
    'bench',
  ];
  args.push('--port', '0', '--metrics-port', '0', '--token-label', 'kb-bench');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(NODE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)));
    const t = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve();
      else reject(new Error(`keybroker init exited ${code}: ${err.trim()}`));
    });
  });
  const pki = join(dataDir, 'pki');
  return {
    dataDir,
    configFile: join(dataDir, 'keybroker.json'),
    org,
    tenant,
    pki: {
      caCert: join(pki, 'ca.pem'),
      caKey: join(pki, 'ca-key.pem'),
      adminCert: join(pki, 'admin.pem'),
      adminKey: join(pki, 'admin-key.pem'),
      serviceCert: join(pki, 'service.pem'),
      serviceKey: join(pki, 'service-key.pem'),
      serverCert: join(pki, 'server.pem'),
      serverKey: join(pki, 'server-key.pem'),
    },
  };
}

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => {
      req.destroy();
      resolve(0);
    });
  });
}

/** GET a text resource from the daemon's metrics listener (e.g. /metrics). */
export function httpText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
  });
}

/** KB_BENCH_DAEMON_PROF=1: a V8 CPU profile of each daemon, written to <dataDir>/prof on exit. */
function profileArgs(dataDir: string): string[] {
  return process.env.KB_BENCH_DAEMON_PROF === '1'
    ? ['--cpu-prof', '--cpu-prof-dir', join(dataDir, 'prof')]
    : [];
}

/**
 * Start `keybroker serve` pinned to `core`; resolves once /readyz answers 200 (HSM open,
 * stores ready). `env` carries the phase's KB_* overrides.
 */
export async function startDaemon(
  repoRoot: string,
  dir: DaemonDir,
  opts: { core: string; env: Readonly<Record<string, string>>; readyTimeoutMs?: number },
): Promise<RunningDaemon> {
  const readyFile = join(dir.dataDir, 'run/ready.json');
  // The request log costs what it costs in production; it is kept only when asked for.
  const logFd =
    process.env.KB_BENCH_DAEMON_LOG === '1' ? openSync(join(dir.dataDir, 'daemon.log'), 'a') : undefined;
  const child = new JsonLineChild(
    'keybroker serve',
    [
      NODE,
      ...DAEMON_NODE_FLAGS,
      ...profileArgs(dir.dataDir),
      cli(repoRoot),
      'serve',
      '--config',
      dir.configFile,
    ],
    {
      core: opts.core,
      env: { ...process.env, ...opts.env },
      stdout: logFd ?? 'ignore',
    },
  );
  if (logFd !== undefined) closeSync(logFd);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  let ready: { pid: number; grpcPort: number; metricsPort: number } | undefined;
  while (Date.now() < deadline) {
    if (child.exitCode !== undefined)
      throw new Error(`keybroker serve exited (${child.exitCode}) before ready: ${child.stderr()}`);
    if (ready === undefined && existsSync(readyFile)) {
      ready = JSON.parse(readFileSync(readyFile, 'utf8')) as {
        pid: number;
        grpcPort: number;
        metricsPort: number;
      };
    }
    if (ready !== undefined && (await httpStatus(ready.metricsPort, '/readyz')) === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (ready === undefined || (await httpStatus(ready.metricsPort, '/readyz')) !== 200) {
    await child.stop(2000);
    throw new Error(
      `keybroker serve not ready within ${(opts.readyTimeoutMs ?? 90_000) / 1000} s: ${child.stderr()}`,
    );
  }
  if (ready.pid !== child.pid) throw new Error(`ready file pid ${ready.pid} is not the child ${child.pid}`);
  const r = ready;
  return {
    dir,
    pid: r.pid,
    grpcPort: r.grpcPort,
    metricsPort: r.metricsPort,
    stderr: () => child.stderr(),
    stop: async (graceMs = 15_000) => {
      await child.stop(graceMs);
      return child.exitCode ?? null;
    },
  };
}
