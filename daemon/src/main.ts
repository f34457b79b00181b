/**
 * Composition root: config -> log -> metrics/health -> TLS -> API listener -> HSM -> KeyBroker
 * -> ready; and the signals. The API listens before the HSM is open so that an HSM unreachable
 * at start shows as "not ready" (health, /readyz, UNAVAILABLE) instead of a crash loop.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KbError, toKbError } from './errors.ts';
import { orgId, tenantId } from './ids.ts';
import { FileAuditSink } from './audit/file-audit-sink.ts';
import { hsmCheckpointSigner } from './audit/hsm-checkpoint-signer.ts';
import { keyIdOf } from './audit/checkpoint.ts';
import { ApiServer } from './api/api-server.ts';
import { CallGate } from './api/call-gate.ts';
import { admission, type Admission } from './api/admission.ts';
import { DefaultAuthorizer } from './api/default-authorizer.ts';
import { DeferredAuditSink } from './api/deferred-audit-sink.ts';
import { PlaceholderNoopAuditSink } from './api/placeholder-audit-sink.ts';
import type { Config } from './config/config-schema.ts';
import { ConfigError, loadConfig, readHsmPin, takeEnvHsmPin } from './config/load-config.ts';
import { unservedStoreBackend } from './config/store-backend.ts';
import { writeOrgPolicyFile, writePolicyFileDurably } from './policy/policy-file.ts';
import { loadProfile } from './hsm/hsm-profile.ts';
import { Pkcs11Hsm } from './hsm/pkcs11-hsm.ts';
import { KeyBroker } from './keys/key-broker.ts';
import type { AsymmetricRuntime } from './keys/asymmetric-key-material.ts';
import { startAsymmetricRuntime } from './keys/asymmetric-runtime-start.ts';
import type { KeyBrokerApi } from './keys/key-broker-api.ts';
import { certificateExpiries } from './obs/certificate-expiry.ts';
import { HealthServer } from './obs/health-server.ts';
import type { Readiness } from './obs/health-server.ts';
import { InstrumentedHsm } from './obs/instrumented-hsm.ts';
import { createLoggers } from './obs/logger.ts';
import type { Loggers } from './obs/logger.ts';
import type { Logger } from './obs/logger.ts';
import { Metrics } from './obs/metrics.ts';
import type { BrokerStats } from './obs/metrics.ts';
import { SdNotify } from './obs/sd-notify.ts';
import type { Authorizer } from './policy/authorizer.ts';
import { ApprovalStore } from './policy/approvals.ts';
import { DEFAULT_POLICY_TEXT, defaultPolicy } from './policy/default-policy.ts';
import { PolicyEngine, effectiveRole } from './policy/policy-engine.ts';
import { PolicyStore } from './policy/policy-store.ts';
import { loadCrlFile } from './tls/crl-file.ts';
import type { LoadedCrls } from './tls/crl-file.ts';
import { RevocationSet } from './tls/revocation-set.ts';
import { RegistryAuditHead } from './store/registry-audit-head.ts';
import { RegistryStore } from './store/registry-store.ts';
import { ReloadableServerCredentials } from './tls/reloadable-server-credentials.ts';
import { CertificateAuthority } from './ca/certificate-authority.ts';
import {
  assertDataPlaneSelfTestPassed,
  brokenPrimitives,
  runDataPlaneSelfTest,
} from './wire/data-plane-self-test.ts';
import { Gauge } from 'prom-client';
import { ClusterWorker } from './cluster/cluster-worker.ts';
import { workerConfig, workerIdentity } from './cluster/worker-config.ts';

export interface DaemonOptions {
  readonly configPath?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** The running daemon's moving parts, as main() and the signal handlers see them. */
class Daemon {
  cfg: Config;
  readonly log: Logger;
  readonly env: NodeJS.ProcessEnv;
  readonly configPath: string | undefined;
  readonly sd: SdNotify;
  readonly metrics: Metrics;
  readonly audit = new DeferredAuditSink();
  authorizer: Authorizer = new DefaultAuthorizer();
  /** The one policy every call is evaluated against (the built-in default without policy.file). */
  readonly policy: PolicyStore;
  engine: PolicyEngine;
  /** Two-person approvals (SQLite in the data dir); steps are audited by the call gate. */
  readonly approvals: ApprovalStore;
  #fileSink: FileAuditSink | undefined;
  /** Rate limits and refusal summaries; open summaries are written before the audit sink closes. */
  #admission: Admission | undefined;
  /** The audit checkpoint public key (PEM), published with the receipt key (GetBrokerKeys). */
  #auditKeyPem: string | undefined;
  /** The registry connection that holds the audit log's pinned head. */
  #auditRegistry: RegistryStore | undefined;
  readonly creds: ReloadableServerCredentials;
  /** Revoked client certificates (tls.crlFile), checked by the call gate on every call. */
  readonly revocations = new RevocationSet();
  /** KB_HSM_PIN, taken out of the environment at start (undefined: the pin file). */
  readonly #envPin: string | undefined;
  readonly api: ApiServer;
  readonly ops: HealthServer;
  hsm: Pkcs11Hsm | undefined;
  broker: KeyBroker | undefined;
  /** The broker as CA for its callers (opened with the HSM). */
  certAuthority: CertificateAuthority | undefined;
  /** Post-quantum engines (self-tested), router and worker pool; undefined when pqc is disabled. */
  pqc: AsymmetricRuntime | undefined;
  shuttingDown = false;
  #readyOnce = false;
  #lastReady = false;
  /** Why the data plane is not open yet (the step that failed last, and its error). */
  #openError: string | undefined = 'HSM not open yet';
  /** The start step under way: the HSM, then the audit log, then the key store (KeyBroker). */
  #opening: 'HSM' | 'audit log' | 'key store' = 'HSM';
  #instrumented: InstrumentedHsm | undefined;
  #poll: NodeJS.Timeout | undefined;
  /** This process's part in `serve --workers N` (undefined: the only process). */
  readonly worker: ClusterWorker | undefined;

  readonly loggers: Loggers;

  constructor(
    cfg: Config,
    loggers: Loggers,
    o: DaemonOptions,
    policy: PolicyStore,
    start: { readonly crls: LoadedCrls; readonly envPin: string | undefined },
  ) {
    const log = loggers.log;
    this.#envPin = start.envPin;
    const wid = workerIdentity(o.env ?? process.env);
    this.worker = wid === undefined ? undefined : new ClusterWorker(wid, cfg.dataDir);
    this.policy = policy;
    this.engine = new PolicyEngine(policy, { fipsMode: cfg.policy.fipsMode });
    this.authorizer = this.engine;
    mkdirSync(cfg.dataDir, { recursive: true });
    this.approvals = new ApprovalStore({
      path: join(cfg.dataDir, 'approvals.db'),
      windowMs: cfg.policy.approvalWindowMs,
      retentionMs: cfg.policy.approvalRetentionMs,
      roleOf: (who) => effectiveRole(policy.current(), who.uri, who.roles),
    });
    this.cfg = cfg;
    this.log = log;
    this.loggers = loggers;
    this.env = o.env ?? process.env;
    this.configPath = o.configPath;
    this.sd = new SdNotify(log, this.env);
    this.metrics = new Metrics({
      hsmSessions: () => {
        const h = this.hsm?.health();
        return h === undefined ? undefined : { inUse: h.sessionsInUse, total: h.sessionsTotal };
      },
      brokerStats: () => (this.broker as { stats?: () => BrokerStats } | undefined)?.stats?.(),
      ready: () => this.readiness().ready,
      degraded: () => this.readiness().degraded,
      certificates: () =>
        certificateExpiries(this.cfg.tls.certFile, this.certAuthority?.trustedCaPems() ?? []),
    });
    this.#governanceMetrics();
    this.ops = new HealthServer(this.metrics.registry, () => this.readiness());
    this.creds = new ReloadableServerCredentials(cfg.tls, start.crls.tlsCrls ?? []);
    this.#useCrls(start.crls);
    const admit = admission(cfg);
    this.#admission = admit;
    const gate = new CallGate({
      authorizer: () => this.authorizer,
      audit: this.audit,
      log,
      requestLog: (line) => loggers.request(line),
      metrics: this.metrics,
      defaultDeadlineMs: cfg.limits.defaultDeadlineMs,
      maxDeadlineMs: cfg.limits.maxDeadlineMs,
      shuttingDown: () => this.shuttingDown,
      admit,
      revoked: (issuer, serial) => this.revocations.has(issuer, serial),
      ...(this.worker !== undefined ? { brokerId: this.worker.id } : {}),
    });
    const governance = {
      approvals: this.approvals,
      policy,
      fipsMode: () => this.engine.fipsMode,
      twoPersonRule: () => this.cfg.policy.twoPersonRule,
      persistPolicy: async (text: string, section?: string) => {
        await (section === undefined
          ? writePolicyFileDurably(policyPath(this.cfg), text)
          : writeOrgPolicyFile(sectionsDir(this.cfg), section, text));
        this.worker?.policyChanged();
      },
      operatorOrg: () => this.cfg.policy.operatorOrg,
    };
    this.api = new ApiServer({
      credentials: this.creds,
      gate,
      broker: () => this.brokerOrThrow(),
      limits: cfg.limits,
      connectionAge: { maxMs: cfg.tls.maxConnectionAgeMs, graceMs: cfg.tls.maxConnectionAgeGraceMs },
      certificates: {
        ca: () => {
          // Only once everything is open (audit log included): issuing is audited like any call.
          this.brokerOrThrow();
          if (this.certAuthority === undefined)
            throw new KbError('HSM_UNAVAILABLE', undefined, { detail: 'CA not open' });
          return this.certAuthority;
        },
        broker: () => this.brokerOrThrow(),
        roleOf: (who) => effectiveRole(policy.current(), who.uri, who.roles),
        governance,
        defaultLifetimeMs: cfg.ca.defaultLifetimeMs,
        maxLifetimeMs: cfg.ca.maxLifetimeMs,
      },
      governance,
    });
  }

  /** Trust the broker's own org CAs and refuse what they revoked (at open and on every change). */
  #trustOrgCas(): void {
    const ca = this.certAuthority;
    if (ca === undefined) return;
    this.creds.setExtraCas(ca.trustedCaPems());
    this.revocations.replace('org-ca', ca.revokedKeys());
  }

  /** Install the revocations of tls.crlFile (after the TLS context took them). */
  #useCrls(crls: LoadedCrls): void {
    this.revocations.replace('crlFile', crls.keys);
    const inHandshake = this.creds.crlInHandshake;
    if (crls.summary.length > 0)
      this.log.info(
        { crls: crls.summary, inHandshake },
        inHandshake
          ? 'CRLs loaded: checked in the TLS handshake and on every call'
          : 'CRLs loaded: checked on every call (not in the handshake: a trusted CA has no CRL there)',
      );
  }

  /** FIPS mode and audit sink counters as Prometheus gauges (read at scrape time). */
  #governanceMetrics(): void {
    const registers = [this.metrics.registry];
    const fipsMode = () => this.engine.fipsMode;
    const sink = () => this.#fileSink?.stats();
    new Gauge({
      name: 'keybroker_fips_mode',
      help: '1 when the FIPS algorithm policy is on (an algorithm policy, not a validated module)',
      registers,
      collect() {
        this.set(fipsMode() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'keybroker_audit_sink',
      help: 'Audit sink counters since open (records, batches, checkpoints, failures, pending, healthy)',
      labelNames: ['stat'],
      registers,
      collect() {
        const st = sink();
        if (st === undefined) return;
        for (const k of ['records', 'batches', 'checkpoints', 'failures', 'pending'] as const)
          this.set({ stat: k }, st[k]);
        this.set({ stat: 'healthy' }, st.healthy ? 1 : 0);
      },
    });
  }

  /** The broker itself (not the cluster's announcing wrapper), for the cluster worker. */
  rawBroker: KeyBroker | undefined;

  /** Re-read the policy file and sections another worker of the cluster wrote. */
  async reloadPolicy(): Promise<void> {
    const pf = policyPath(this.cfg);
    if (this.cfg.policy.file !== '' || existsSync(pf)) await this.policy.reloadFromFile(pf);
    else this.policy.useSectionsDir(sectionsDir(this.cfg));
  }

  brokerOrThrow(): KeyBrokerApi {
    if (this.shuttingDown) throw new KbError('SHUTTING_DOWN');
    // The step the start loop is on: an audit file held by another daemon is not an HSM fault
    // (callers and the metrics label tell them apart; both are UNAVAILABLE).
    if (this.broker === undefined)
      throw new KbError(this.#opening === 'audit log' ? 'AUDIT_UNAVAILABLE' : 'HSM_UNAVAILABLE', undefined, {
        detail: this.#openError ?? 'not open',
      });
    return this.broker;
  }

  readiness(): Readiness {
    const fipsMode = this.engine.fipsMode;
    if (this.shuttingDown) return { ready: false, degraded: false, reason: 'shutting down', fipsMode };
    if (this.broker === undefined)
      return { ready: false, degraded: false, reason: this.#openError ?? 'starting', fipsMode };
    const b = this.broker.health();
    const a = this.audit.health();
    if (!a.ok)
      return { ready: false, degraded: b.degraded, reason: `audit: ${a.reason ?? 'unavailable'}`, fipsMode };
    // Degraded (HSM away, cached keys serving) is not ready: balancers should move new work
    // elsewhere while in-flight callers with warm keys keep being served.
    return {
      ready: b.ready && !b.degraded,
      degraded: b.degraded,
      ...(b.reason !== undefined ? { reason: b.reason } : {}),
      fipsMode,
    };
  }

  async start(): Promise<void> {
    const grpcPort = await this.api.listen(this.cfg.listen.host, this.cfg.listen.port);
    const metricsPort = this.cfg.metrics.enabled
      ? await this.ops.listen(this.cfg.metrics.host, this.cfg.metrics.port)
      : 0;
    const grpc = `${this.cfg.listen.host}:${grpcPort}`;
    const metrics = this.cfg.metrics.enabled ? `${this.cfg.metrics.host}:${metricsPort}` : '';
    if (this.cfg.lifecycle.readyFile !== '') {
      const f = this.cfg.lifecycle.readyFile;
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(
        `${f}.tmp`,
        JSON.stringify({ pid: process.pid, grpc, grpcPort, metrics, metricsPort }) + '\n',
      );
      renameSync(`${f}.tmp`, f);
    }
    this.log.info({ grpc, grpcPort, metrics, metricsPort }, 'listening');
    this.#poll = setInterval(() => this.#checkReady(), 500);
    void this.#openHsmLoop();
  }

  async #openHsmLoop(): Promise<void> {
    while (!this.shuttingDown && this.broker === undefined) {
      try {
        await this.#openHsm();
        this.#openError = undefined;
        this.#checkReady();
        return;
      } catch (err) {
        const e = toKbError(err);
        // Name the step that failed: an audit file locked by another daemon is not an HSM fault.
        const what = this.#opening;
        this.#openError = `${what === 'HSM' ? 'HSM not reachable' : `cannot open the ${what}`}: ${e.safeMessage}`;
        this.log.error(
          { err: e.safeMessage, detail: e.detail, step: what, retryMs: this.cfg.hsm.retryMs },
          `cannot open ${what}; retrying`,
        );
        await new Promise((r) => setTimeout(r, this.cfg.hsm.retryMs));
      }
    }
  }

  /**
   * Open the HSM (once), then the audit log (its checkpoint key lives in the HSM), then the
   * KeyBroker. A later step failing keeps the earlier ones open for the next attempt.
   */
  async #openHsm(): Promise<void> {
    this.#opening = 'HSM';
    if (this.#instrumented === undefined) {
      const { hsm: h } = this.cfg;
      if (h.softhsmConf !== '') process.env.SOFTHSM2_CONF = h.softhsmConf;
      let profile = loadProfile(h.profile);
      if (h.module !== '') profile = { ...profile, module: { ...profile.module, paths: [h.module] } };
      this.hsm = await Pkcs11Hsm.open({
        profile,
        pin: this.#envPin ?? readHsmPin(this.cfg, {}),
        tokenLabel: h.tokenLabel,
        logger: this.log,
      });
      this.#instrumented = new InstrumentedHsm(this.hsm, this.metrics);
    }
    const hsm = this.#instrumented;
    if (this.certAuthority === undefined) {
      this.certAuthority = await CertificateAuthority.open({
        hsm,
        dataDir: this.cfg.dataDir,
        onChange: () => this.#trustOrgCas(),
        onOpenError: (org, generation, err) =>
          this.log.error(
            { org, generation, err: toKbError(err).safeMessage, detail: toKbError(err).detail },
            'org CA generation cannot be opened: not trusted, not issuing',
          ),
      });
      this.#trustOrgCas();
    }
    this.#opening = 'audit log';
    if (!this.audit.attached) await this.#openAudit(hsm);
    this.#opening = 'key store';
    const broker = await KeyBroker.open({
      hsm,
      dataDir: this.cfg.dataDir,
      cache: { ttlMs: this.cfg.keys.cacheTtlMs, maxEntries: this.cfg.keys.cacheMaxEntries },
      degradedServeMs: this.cfg.keys.degradedServeMs,
      logger: this.log,
      auditHead: () => this.audit.head(),
      auditCheckpointKeyPem: () => this.#auditKeyPem,
      ...(this.worker !== undefined ? { cluster: this.worker.keyBrokerCluster() } : {}),
      ...(this.pqc !== undefined
        ? {
            pqc: {
              runtime: this.pqc,
              cacheTtlMs: this.cfg.keys.cacheTtlMs,
              cacheMaxEntries: this.cfg.pqc.cacheMaxEntries,
              limits: {
                maxKeysPerTenant: this.cfg.keys.maxAsymmetricKeysPerTenant,
                maxVersionsPerKey: this.cfg.keys.maxVersionsPerKey,
                maxHsmKeysPerTenant: this.cfg.keys.maxHsmKeysPerTenant,
                maxVerifyVersions: this.cfg.limits.maxVerifyVersions,
              },
            },
          }
        : {}),
    });
    try {
      await this.#bootstrap(broker);
    } catch (err) {
      await broker.close();
      throw err;
    }
    this.rawBroker = broker;
    this.broker = this.worker?.coherent(broker) ?? broker;
    this.#reportStrayFiles(broker);
  }

  /** Warn (once, at open) about tenant files a crash during tenant creation left behind. */
  #reportStrayFiles(broker: KeyBroker): void {
    try {
      const stray = broker.strayTenantFiles();
      if (stray.length > 0)
        this.log.warn(
          { count: stray.length, files: stray.slice(0, 20) },
          'tenant files that no tenant names (left by a crash while creating tenants; nothing in them is readable): safe to delete',
        );
    } catch (err) {
      this.log.warn({ err: toKbError(err).safeMessage }, 'could not look for stray tenant files');
    }
  }

  /** The hash-chained audit file, its checkpoints signed by a non-extractable key in the HSM. */
  async #openAudit(hsm: InstrumentedHsm): Promise<void> {
    const a = this.cfg.audit;
    if (!a.enabled) {
      this.log.warn({}, 'audit disabled by config: records are discarded (placeholder sink)');
      this.audit.attach(new PlaceholderNoopAuditSink());
      return;
    }
    const signer = await hsmCheckpointSigner(hsm);
    // A convenience copy of the checkpoint key beside the log, written once, never replaced: the
    // trust anchor is the fingerprint logged here, kept by the operator away from the log.
    const pub = join(dirname(a.path), 'audit-key.pem');
    const fingerprint = keyIdOf(signer.publicKeyPem);
    mkdirSync(dirname(pub), { recursive: true });
    this.#auditKeyPem = signer.publicKeyPem;
    if (!existsSync(pub)) {
      writeFileSync(`${pub}.tmp`, signer.publicKeyPem);
      renameSync(`${pub}.tmp`, pub);
    } else if (keyIdOf(readFileSync(pub, 'utf8')) !== fingerprint) {
      this.log.error(
        { path: pub, fingerprint },
        'audit-key.pem beside the log is not the checkpoint key; left as is',
      );
    }
    this.log.info({ fingerprint, alg: signer.alg }, 'audit checkpoint key (pin this fingerprint)');
    this.#auditRegistry ??= RegistryStore.open(join(this.cfg.dataDir, 'registry.db'));
    const sink = await FileAuditSink.open({
      path: a.path,
      signer,
      headStore: new RegistryAuditHead(this.#auditRegistry, this.worker?.id),
      checkpointEvery: a.checkpointEvery,
      checkpointIntervalMs: a.checkpointIntervalMs,
      rotateBytes: a.rotateBytes,
      rotateIntervalMs: a.rotateIntervalMs,
      onEvent: (e) => this.log.warn({ kind: e.kind, detail: e.detail }, 'audit event'),
    });
    this.audit.attach(sink);
    this.#fileSink = sink;
    this.log.info({ path: a.path, head: sink.head().seq }, 'audit log open');
  }

  /** Create the configured org and tenants when absent (dev and test convenience). */
  async #bootstrap(broker: KeyBroker): Promise<void> {
    const { org, tenants } = this.cfg.bootstrap;
    if (org === '') return;
    const o = orgId(org);
    const exists = async (f: () => Promise<unknown>) =>
      f().then(
        () => true,
        (e: unknown) => {
          if (toKbError(e).code === 'NOT_FOUND') return false;
          throw e;
        },
      );
    if (!(await exists(() => broker.describeOrg(o)))) await broker.createOrg(o);
    for (const t of tenants) {
      const ref = { org: o, tenant: tenantId(t) };
      if (!(await exists(() => broker.describeTenant(ref)))) await broker.createTenant(o, ref.tenant);
    }
    this.log.info({ org, tenants }, 'bootstrap org and tenants present');
  }

  #checkReady(): void {
    const r = this.readiness();
    this.api.setServing(r.ready);
    if (this.#readyOnce && r.ready !== this.#lastReady) {
      this.log.warn({ ready: r.ready, degraded: r.degraded, reason: r.reason }, 'readiness changed');
    }
    this.#lastReady = r.ready;
    if (r.ready && !this.#readyOnce) {
      this.#readyOnce = true;
      this.log.info({ degraded: r.degraded }, 'ready');
      void this.sd.notify('READY=1', 'STATUS=serving');
    }
  }

  /** SIGHUP: re-read config and TLS files; a bad new config keeps the old one running. */
  async reload(): Promise<void> {
    // No RELOADING=1: under systemd 252 (Type=notify, ExecReload=kill -HUP) it races with the
    // manager's own reload state and left the unit stuck in "reloading" (2 runs in ~30).
    // READY=1 is harmless in every state; STATUS= says when the reload finished.
    try {
      const next = workerConfig(loadConfig(this.configPath, this.env), workerIdentity(this.env));
      const crls = await loadCrlFile(next.tls.crlFile, next.tls.caFile);
      this.creds.reload(next.tls, crls.tlsCrls ?? []);
      this.#useCrls(crls);
      // A bad policy throws here and the old one stays (the whole reload is refused).
      const pf = policyPath(next);
      if (next.policy.file !== '' || existsSync(pf)) {
        const swap = await this.policy.reloadFromFile(pf);
        this.log.info({ digest: swap.digest, previous: swap.previousDigest }, 'policy reloaded');
      }
      // Config FIPS mode applies from now on; twoPersonRule is read per call from this.cfg, and
      // approvalWindowMs applies to approvals made after a restart.
      if (next.policy.fipsMode !== this.cfg.policy.fipsMode) {
        this.engine = new PolicyEngine(this.policy, { fipsMode: next.policy.fipsMode });
        this.authorizer = this.engine;
        this.log.warn({ fipsMode: this.engine.fipsMode }, 'FIPS mode changed by config reload');
      }
      this.log.level = next.log.level;
      this.cfg = next;
      this.log.info({}, 'reloaded config and TLS certificates');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'reload failed; keeping the previous config');
      await this.sd.notify('READY=1', 'STATUS=reload failed; serving the previous config');
      return;
    }
    await this.sd.notify('READY=1', 'STATUS=serving (reloaded)');
  }

  /** SIGTERM: drain, then close the broker (zeroes caches), the audit sink and the HSM. */
  async stop(): Promise<boolean> {
    this.shuttingDown = true;
    if (this.#poll) clearInterval(this.#poll);
    await this.sd.notify('STOPPING=1');
    this.log.info({ graceMs: this.cfg.lifecycle.shutdownGraceMs }, 'shutting down: draining');
    const { forced } = await this.api.shutdown(this.cfg.lifecycle.shutdownGraceMs);
    await this.broker?.close();
    await this.pqc?.pool?.close();
    await this.#admission?.flush();
    await this.audit.close();
    this.#auditRegistry?.close();
    this.approvals.close();
    this.certAuthority?.close();
    await this.hsm?.close();
    await this.ops.close();
    // A stale ready file would point clients at a port nobody listens on.
    if (this.cfg.lifecycle.readyFile !== '') rmSync(this.cfg.lifecycle.readyFile, { force: true });
    this.log.info({ forced }, 'stopped');
    return !forced;
  }
}

/** Where the policy lives: policy.file, else the data dir (written by an API SetPolicy). */
function policyPath(cfg: Config): string {
  return cfg.policy.file !== '' ? cfg.policy.file : join(cfg.dataDir, 'policy.json');
}

/** Where the per-org policy sections live (one <org>.json each, written by SetPolicy). */
function sectionsDir(cfg: Config): string {
  return join(cfg.dataDir, 'policy.d');
}

/** Run the daemon until a signal stops it; resolves with the exit code. */
export async function runDaemon(o: DaemonOptions): Promise<number> {
  const cfg = workerConfig(
    loadConfig(o.configPath, o.env ?? process.env),
    workerIdentity(o.env ?? process.env),
  );
  const unserved = unservedStoreBackend(cfg);
  if (unserved !== undefined) throw new ConfigError(unserved);
  // Out of the environment before any worker or child process is started (they would inherit it).
  const envPin = takeEnvHsmPin(o.env ?? process.env);
  const crls = await loadCrlFile(cfg.tls.crlFile, cfg.tls.caFile);
  const loggers = createLoggers(cfg.log.level);
  const log = loggers.log;
  let policy: PolicyStore;
  // policy.file, or the policy a SetPolicy call persisted into the data dir.
  const file = policyPath(cfg);
  if (cfg.policy.file !== '' || existsSync(file)) {
    try {
      policy = await PolicyStore.fromFile(file);
    } catch (err) {
      throw new ConfigError(`policy.file: ${toKbError(err).safeMessage} (${file})`);
    }
    log.info({ file, digest: policy.current()?.digest }, 'policy loaded');
  } else {
    policy = new PolicyStore(defaultPolicy(), DEFAULT_POLICY_TEXT);
    log.warn({}, 'no policy.file: built-in default policy (admins: own org; services: own tenant)');
  }
  try {
    policy.useSectionsDir(sectionsDir(cfg));
  } catch (err) {
    throw new ConfigError(`policy: ${toKbError(err).safeMessage} (${sectionsDir(cfg)})`);
  }
  const d = new Daemon(cfg, loggers, o, policy, { crls, envPin });
  log.info(
    { fipsMode: d.engine.fipsMode, twoPersonRule: cfg.policy.twoPersonRule },
    'access control: one policy engine for every call',
  );
  installTestHooks(d);
  // Power-on KATs of the data plane (AES-256-GCM, HKDF-SHA256): a wrong answer means no start.
  try {
    const broken = d.env.KB_TEST_HOOKS === '1' ? d.env.KB_TEST_DATA_PLANE_BROKEN : undefined;
    const checks = runDataPlaneSelfTest(undefined, brokenPrimitives(broken));
    assertDataPlaneSelfTestPassed(checks);
    log.info({ checks: checks.length }, 'data-plane power-on self-test passed');
  } catch (err) {
    log.fatal({ err: toKbError(err).safeMessage }, 'data-plane power-on self-test failed: refusing to start');
    loggers.flush();
    return 1;
  }
  if (cfg.pqc.enabled) {
    // Power-on self-test before anything listens: a failed known answer means no start at all.
    try {
      const corruptKat = d.env.KB_TEST_HOOKS === '1' ? d.env.KB_TEST_PQC_CORRUPT_KAT : undefined;
      const { runtime, report } = await startAsymmetricRuntime({
        ...cfg.pqc,
        ...(corruptKat !== undefined ? { corruptKat } : {}),
      });
      d.pqc = runtime;
      log.info(
        { engines: cfg.pqc.engines, checks: report.results.length, ms: Math.round(report.durationMs) },
        'pqc power-on self-test passed',
      );
    } catch (err) {
      log.fatal({ err: toKbError(err).safeMessage }, 'pqc power-on self-test failed: refusing to start');
      loggers.flush();
      return 1;
    }
  }
  await d.start();
  d.worker?.attach({
    log,
    registry: d.metrics.registry,
    readiness: () => d.readiness(),
    broker: () => d.rawBroker,
    reloadPolicy: () => d.reloadPolicy(),
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onStop = (sig: string) => {
      if (stopping) {
        log.warn({ sig }, 'second signal: forcing shutdown');
        d.api.forceShutdown();
        loggers.flush();
        resolve(1);
        return;
      }
      stopping = true;
      log.info({ sig }, 'signal received');
      d.stop().then(
        () => {
          loggers.flush();
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err: String(err) }, 'shutdown failed');
          loggers.flush();
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => onStop('SIGTERM'));
    process.on('SIGINT', () => onStop('SIGINT'));
    process.on('SIGHUP', () => void d.reload());
  });
}

/**
 * Test-only hooks, enabled only by KB_TEST_HOOKS=1 in the environment (never by the config
 * file): SIGUSR2 toggles the HSM fault switch, so e2e tests can take the HSM away and back.
 */
function installTestHooks(d: Daemon): void {
  if (d.env.KB_TEST_HOOKS !== '1') return;
  let faulty = false;
  process.on('SIGUSR2', () => {
    faulty = !faulty;
    d.hsm?.setFaultInjection(faulty);
    d.log.warn({ faulty }, 'test hook: HSM fault injection toggled');
  });
}
