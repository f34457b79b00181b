/**
 * Prometheus metrics of the daemon. Names use the one vocabulary (org/tenant/customer, wrap,
 * encrypt); tenant names are never labels (unbounded cardinality), RPC and status are.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CertificateExpiry } from './certificate-expiry.ts';

/** Optional counters the key hierarchy may expose; read at scrape time. */
export interface BrokerStats {
  readonly cacheHits?: number;
  readonly cacheMisses?: number;
  readonly cacheEntries?: number;
  readonly openTenantFiles?: number;
}

/** Live values sampled at each scrape. */
export interface MetricsSources {
  hsmSessions(): { inUse: number; total: number } | undefined;
  brokerStats(): BrokerStats | undefined;
  ready(): boolean;
  degraded(): boolean;
  /** Certificates to renew in time (server TLS certificate, org CAs). */
  certificates?(): readonly CertificateExpiry[];
}

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export class Metrics {
  readonly registry = new Registry();
  readonly rpcRequests: Counter<'rpc' | 'code'>;
  readonly rpcDuration: Histogram<'rpc' | 'code'>;
  readonly rpcInFlight: Gauge<'rpc'>;
  readonly hsmCalls: Histogram<'op' | 'outcome'>;
  readonly hsmErrors: Counter<'op' | 'code'>;
  readonly batchItems: Counter<'rpc' | 'outcome'>;
  readonly streamBytes: Counter<'rpc' | 'direction'>;
  readonly identityParses: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'keybroker_' });
    this.rpcRequests = new Counter({
      name: 'keybroker_rpc_requests_total',
      help: 'gRPC calls by method and final status code',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.rpcDuration = new Histogram({
      name: 'keybroker_rpc_duration_seconds',
      help: 'gRPC call latency by method and status code (server side, including audit)',
      labelNames: ['rpc', 'code'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.rpcInFlight = new Gauge({
      name: 'keybroker_rpc_in_flight',
      help: 'gRPC calls being handled',
      labelNames: ['rpc'],
      registers,
    });
    this.hsmCalls = new Histogram({
      name: 'keybroker_hsm_call_duration_seconds',
      help: 'HSM (PKCS#11) call latency by operation and outcome',
      labelNames: ['op', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.hsmErrors = new Counter({
      name: 'keybroker_hsm_errors_total',
      help: 'HSM call failures by operation and error code',
      labelNames: ['op', 'code'],
      registers,
    });
    this.batchItems = new Counter({
      name: 'keybroker_batch_items_total',
      help: 'Batch items by method and outcome',
      labelNames: ['rpc', 'outcome'],
      registers,
    });
    this.streamBytes = new Counter({
      name: 'keybroker_stream_bytes_total',
      help: 'Bytes through streaming RPCs',
      labelNames: ['rpc', 'direction'],
      registers,
    });
    this.identityParses = new Counter({
      name: 'keybroker_tls_identity_parses_total',
      help: 'Client certificates parsed into identities (once per TLS connection)',
      registers,
    });
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    new Gauge({
      name: 'keybroker_certificate_not_after_seconds',
      help: 'notAfter (Unix seconds) of the server TLS certificate and of each org CA',
      labelNames: ['cert', 'subject'],
      registers,
      collect() {
        const certs = sources.certificates?.();
        if (certs === undefined) return;
        this.reset();
        for (const c of certs)
          this.set({ cert: c.cert, subject: c.subject }, Math.floor(c.notAfterMs / 1000));
      },
    });
    gauge('keybroker_ready', '1 when ready to serve (HSM reachable, stores open)', () => +sources.ready());
    gauge('keybroker_degraded', '1 while the HSM is away and cached keys serve', () => +sources.degraded());
    gauge(
      'keybroker_hsm_sessions_in_use',
      'HSM session pool: sessions in use',
      () => sources.hsmSessions()?.inUse,
    );
    gauge('keybroker_hsm_sessions_total', 'HSM session pool: size', () => sources.hsmSessions()?.total);
    gauge(
      'keybroker_key_cache_hits',
      'Unwrapped-key cache hits since start',
      () => sources.brokerStats()?.cacheHits,
    );
    gauge(
      'keybroker_key_cache_misses',
      'Unwrapped-key cache misses since start',
      () => sources.brokerStats()?.cacheMisses,
    );
    gauge(
      'keybroker_key_cache_entries',
      'Unwrapped keys in the cache',
      () => sources.brokerStats()?.cacheEntries,
    );
    gauge(
      'keybroker_tenant_files_open',
      'Open tenant SQLite files',
      () => sources.brokerStats()?.openTenantFiles,
    );
  }
}
