/**
 * Start the real daemon for tests and benchmarks: `keybroker init` into a fresh temp data dir
 * (private CA, certs, SoftHSM2 token, PINs), then `keybroker serve` as a child process on
 * 127.0.0.1 port 0. Ports come from the "listening" log line; every log line is kept for
 * assertions (redaction tests). Also: clients for any identity, extra certificates from the
 * same CA, and the test hook that toggles the HSM fault switch (SIGUSR2, KB_TEST_HOOKS=1).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectKeybroker } from '../../daemon/src/api/api-client.ts';
import { DAEMON_NODE_FLAGS } from '../../daemon/src/cli/daemon-node-flags.ts';
import { initDataDir } from '../../daemon/src/cli/init-command.ts';
import { loadDevCa } from '../../daemon/src/tls/dev-pki.ts';
import type { DevCa, PemPair } from '../../daemon/src/tls/dev-pki.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');

export type KeybrokerClient = ReturnType<typeof connectKeybroker>;

export interface InitOptions {
  readonly org?: string;
  readonly tenant?: string;
  readonly dataDir?: string;
  /** Certificate algorithm of the dev PKI (default ECDSA P-256). */
  readonly pkiAlg?: 'ecdsa-p256' | 'mldsa65';
}

export interface StartOptions {
  /** Reuse a data dir from an earlier start (restart tests); default: init a fresh one. */
  readonly dataDir?: string;
  readonly init?: InitOptions;
  /** Extra environment (KB_* overrides). */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Two-person rule for destroy/rotate-org/set-policy (config policy.twoPersonRule). Default
   * false here so suites about other features can destroy and rotate directly; the daemon's own
   * default is true, and test/e2e/access-control.test.ts runs with it on.
   */
  readonly twoPersonRule?: boolean;
  /** Wait for the "ready" line (default true); false waits for "listening" only. */
  readonly waitReady?: boolean;
  readonly timeoutMs?: number;
  /** `serve --workers N` (N > 1: a cluster primary; waits for "cluster listening"/"cluster ready"). */
  readonly workers?: number;
}

export interface LogLine {
  readonly msg?: string;
  readonly level?: string;
  readonly [k: string]: unknown;
}

/** A running daemon. */
export class DaemonHandle {
  readonly dataDir: string;
  readonly proc: ChildProcess;
  /** Raw stdout+stderr text, for redaction checks. */
  output = '';
  readonly lines: LogLine[] = [];
  grpcPort = 0;
  metricsPort = 0;
  readonly exited: Promise<number | null>;
  #clients: KeybrokerClient[] = [];

  constructor(dataDir: string, proc: ChildProcess) {
    this.dataDir = dataDir;
    this.proc = proc;
    let buf = '';
    const onData = (d: Buffer) => {
      const s = d.toString('utf8');
      this.output += s;
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ msg: line, level: 'raw' });
        }
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.exited = new Promise((res) => proc.on('exit', (code) => res(code)));
  }

  get address(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  pki(name: string): string {
    return join(this.dataDir, 'pki', name);
  }

  /** Resolves with the first log line matching `pred` (already seen or future). */
  async waitFor(pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (this.proc.exitCode !== null)
        throw new Error(`daemon exited (${this.proc.exitCode}):\n${this.output}`);
      if (Date.now() > end) throw new Error(`timed out waiting for a log line; output:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** A client as one of the init identities ("admin", "service") or as the given cert/key. */
  client(who: 'admin' | 'service' | PemPair | null): KeybrokerClient {
    const caPem = readFileSync(this.pki('ca.pem'));
    const pair =
      who === null
        ? {}
        : typeof who === 'string'
          ? {
              certPem: readFileSync(this.pki(`${who}.pem`)),
              keyPem: readFileSync(this.pki(`${who}-key.pem`)),
            }
          : { certPem: Buffer.from(who.certPem), keyPem: Buffer.from(who.keyPem) };
    const c = connectKeybroker({ address: this.address, caPem, ...pair });
    this.#clients.push(c);
    return c;
  }

  /** The data dir's CA, to issue more client certificates. */
  async ca(): Promise<DevCa> {
    return loadDevCa(readFileSync(this.pki('ca.pem'), 'utf8'), readFileSync(this.pki('ca-key.pem'), 'utf8'));
  }

  /** A client certificate for spiffe://<org>/<tenant>/<service> from the daemon's CA. */
  async issueClient(uri: string): Promise<PemPair> {
    return (await this.ca()).issue({ commonName: 'test', uris: [uri], usage: 'client' });
  }

  async metrics(path = '/metrics'): Promise<{ status: number; body: string }> {
    const r = await fetch(`http://127.0.0.1:${this.metricsPort}${path}`);
    return { status: r.status, body: await r.text() };
  }

  /** Toggle the HSM fault switch (test hook). */
  toggleHsmFault(): void {
    this.proc.kill('SIGUSR2');
  }

  closeClients(): void {
    for (const c of this.#clients) c.close();
    this.#clients = [];
  }

  /** SIGTERM and wait for exit; returns the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.closeClients();
    if (this.proc.exitCode === null) this.proc.kill(signal);
    return this.exited;
  }
}

/** `keybroker init` into a fresh temp dir (port 0 everywhere). */
export async function initTestDataDir(o: InitOptions = {}): Promise<string> {
  const dir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'kb-e2e-'));
  await initDataDir({
    'data-dir': dir,
    org: o.org ?? 'acme',
    tenant: o.tenant ?? 'alpha',
    admin: 'root',
    service: 'app',
    'pki-alg': o.pkiAlg ?? 'ecdsa-p256',
    port: 0,
    'metrics-port': 0,
    'token-label': 'kb-e2e',
    force: false,
  });
  return dir;
}

/** Start the daemon; resolves once it logged "listening" (and "ready" unless waitReady=false). */
export async function startDaemon(o: StartOptions = {}): Promise<DaemonHandle> {
  const dataDir = o.dataDir ?? (await initTestDataDir(o.init));
  const proc = spawn(
    process.execPath,
    [
      ...DAEMON_NODE_FLAGS,
      CLI,
      'serve',
      '--config',
      join(dataDir, 'keybroker.json'),
      ...(o.workers !== undefined ? ['--workers', String(o.workers)] : []),
    ],
    {
      env: {
        ...process.env,
        KB_TEST_HOOKS: '1',
        KB_LOG_LEVEL: 'debug',
        KB_POLICY_TWO_PERSON_RULE: o.twoPersonRule === true ? 'true' : 'false',
        ...o.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const d = new DaemonHandle(dataDir, proc);
  const many = o.workers !== undefined && o.workers > 1;
  const listening = await d.waitFor((l) => l.msg === (many ? 'cluster listening' : 'listening'), o.timeoutMs);
  d.grpcPort = Number(listening.grpcPort);
  d.metricsPort = Number(listening.metricsPort);
  if (o.waitReady !== false)
    await d.waitFor((l) => l.msg === (many ? 'cluster ready' : 'ready'), o.timeoutMs);
  return d;
}

/** Remove a data dir made by initTestDataDir. */
export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  rmSync(`${dir}-token`, { recursive: true, force: true }); // init's token dir, outside the data dir
}
