/**
 * The gRPC server: Admin and Crypto behind the call gate, standard health checking and server
 * reflection, mTLS only. Shutdown drains (no new calls, in-flight ones finish) within a grace
 * period, then cancels what is left.
 */
import type { Http2SecureServer, ServerHttp2Session } from 'node:http2';
import { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { loadSync } from '@grpc/proto-loader';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { ServingStatus } from 'grpc-health-check';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { ReloadableServerCredentials } from '../tls/reloadable-server-credentials.ts';
import { adminService } from './admin-service.ts';
import { approvalsService } from './approvals-service.ts';
import type { Governance } from './approvals-service.ts';
import type { CallGate } from './call-gate.ts';
import { certificatesService } from './certificates-service.ts';
import type { CertificatesServiceOptions } from './certificates-service.ts';
import { cryptoService } from './crypto-service.ts';
import { policyService } from './policy-service.ts';
import { keysService } from './keys-service.ts';
import { blindIndexService } from './blind-index-service.ts';
import { secretsService } from './secrets-service.ts';
import { loadKeybrokerPackage, maxRequestFields, safeService } from './proto-definitions.ts';
import type { FieldLimits } from './request-bounds.ts';

const FLOW_CONTROL_WINDOW = 8 * 1024 * 1024;
const WIDENED = new WeakSet<Http2SecureServer>();

export const SERVICE_NAMES = [
  'keybroker.v1.Admin',
  'keybroker.v1.Crypto',
  'keybroker.v1.Approvals',
  'keybroker.v1.Policy',
  'keybroker.v1.Keys',
  'keybroker.v1.Certificates',
  'keybroker.v1.BlindIndexes',
  'keybroker.v1.Secrets',
] as const;

export interface ApiServerOptions {
  readonly credentials: ReloadableServerCredentials;
  readonly gate: CallGate;
  readonly broker: () => KeyBrokerApi;
  /** Two-person rule and policy services (Approvals, Policy); absent in gate-only tests. */
  readonly governance?: Governance;
  readonly limits: FieldLimits & { readonly maxMessageBytes: number; readonly maxConcurrentStreams: number };
  /** Connection lifetime (tls.maxConnectionAgeMs / GraceMs); grpc-js default (none) when absent. */
  readonly connectionAge?: { readonly maxMs: number; readonly graceMs: number };
  /** The broker as CA for its callers (keybroker.v1.Certificates); absent in gate-only tests. */
  readonly certificates?: CertificatesServiceOptions;
}

export class ApiServer {
  readonly #server: Server;
  readonly #creds: ReloadableServerCredentials;
  readonly #health: HealthImplementation;
  #serving: boolean | undefined;

  constructor(o: ApiServerOptions) {
    this.#creds = o.credentials;
    this.#server = new Server({
      // Hard cap of gRPC itself (RESOURCE_EXHAUSTED); up to it, oversized messages are refused
      // with INVALID_ARGUMENT by the deserializers (see safeService).
      'grpc.max_receive_message_length': o.limits.maxMessageBytes * 4,
      'grpc.max_send_message_length': o.limits.maxMessageBytes * 2,
      // Calls in flight per client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
      'grpc.max_concurrent_streams': o.limits.maxConcurrentStreams,
      // No channelz service is exposed, so its per-call bookkeeping (~4% of a warm Encrypt's
      // server CPU in profiles) would be pure cost.
      'grpc.enable_channelz': 0,
      // A client re-handshakes at least this often, so a CA dropped from the bundle stops
      // working on live connections too (expiry and revocation are also checked per call).
      ...(o.connectionAge !== undefined
        ? {
            'grpc.max_connection_age_ms': o.connectionAge.maxMs,
            'grpc.max_connection_age_grace_ms': o.connectionAge.graceMs,
          }
        : {}),
    });
    const pkg = loadKeybrokerPackage();
    const maxFields = maxRequestFields(o.limits.maxBatchItems);
    this.#server.addService(
      safeService(pkg, 'keybroker.v1.Admin', o.limits.maxMessageBytes, maxFields),
      adminService(o.gate, o.broker, o.governance),
    );
    this.#server.addService(
      safeService(pkg, 'keybroker.v1.Crypto', o.limits.maxMessageBytes, maxFields),
      cryptoService(o.gate, o.broker, o.limits),
    );
    this.#server.addService(
      safeService(pkg, 'keybroker.v1.Keys', o.limits.maxMessageBytes, maxFields),
      keysService(o.gate, o.broker, o.limits),
    );
    this.#server.addService(
      safeService(pkg, 'keybroker.v1.BlindIndexes', o.limits.maxMessageBytes),
      blindIndexService(o.gate, o.broker, o.limits),
    );
    this.#server.addService(
      safeService(pkg, 'keybroker.v1.Secrets', o.limits.maxMessageBytes),
      secretsService(o.gate, o.broker),
    );
    if (o.governance !== undefined) {
      this.#server.addService(
        safeService(pkg, 'keybroker.v1.Approvals', o.limits.maxMessageBytes, maxFields),
        approvalsService(o.gate, o.governance),
      );
      this.#server.addService(
        safeService(pkg, 'keybroker.v1.Policy', o.limits.maxMessageBytes, maxFields),
        policyService(o.gate, o.governance),
      );
    }
    if (o.certificates !== undefined) {
      this.#server.addService(
        safeService(pkg, 'keybroker.v1.Certificates', o.limits.maxMessageBytes),
        certificatesService(o.gate, o.certificates),
      );
    }
    const initial: Record<string, ServingStatus> = { '': 'NOT_SERVING' };
    for (const s of SERVICE_NAMES) initial[s] = 'NOT_SERVING';
    this.#health = new HealthImplementation(initial);
    this.#health.addToServer(this.#server);
    // Reflection describes the health service too, so grpcurl can call it by name.
    new ReflectionService({ ...pkg, ...loadSync(healthProtoPath) }).addToServer(this.#server);
  }

  /** Bind host:port (0 picks a free port); resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(addr, this.#creds, (err, bound) => {
        if (err) return reject(err);
        this.#widenFlowControl();
        resolve(bound);
      });
    });
  }

  /**
   * grpc-js servers keep HTTP/2's default 64 KiB receive window, which caps a client stream
   * (EncryptStream uploads) at one window per round trip. grpc-js has no server option for it,
   * so widen each new session's windows here. Reaches into a grpc-js internal (`http2Servers`);
   * if that ever disappears this is a no-op and only streaming throughput suffers.
   */
  #widenFlowControl(): void {
    const servers = (this.#server as unknown as { http2Servers?: Map<Http2SecureServer, unknown> })
      .http2Servers;
    for (const h2 of servers?.keys() ?? []) {
      if (WIDENED.has(h2)) continue;
      WIDENED.add(h2);
      h2.on('session', (session: ServerHttp2Session) => {
        session.settings({ initialWindowSize: FLOW_CONTROL_WINDOW });
        session.setLocalWindowSize(FLOW_CONTROL_WINDOW);
      });
    }
  }

  /** Mirror readiness into grpc.health.v1 (only on change, so watchers see transitions). */
  setServing(serving: boolean): void {
    if (this.#serving === serving) return;
    this.#serving = serving;
    const st: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    this.#health.setStatus('', st);
    for (const s of SERVICE_NAMES) this.#health.setStatus(s, st);
  }

  /** Swap TLS certificates for new handshakes; live connections are kept. */
  reloadTls(): void {
    this.#creds.reload();
  }

  /** Stop accepting, let in-flight calls finish for up to `graceMs`, then cancel the rest. */
  shutdown(graceMs: number): Promise<{ forced: boolean }> {
    this.setServing(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve({ forced: true });
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve({ forced: false });
      });
    });
  }

  /** Cancel everything now (second signal). */
  forceShutdown(): void {
    this.#server.forceShutdown();
  }
}
