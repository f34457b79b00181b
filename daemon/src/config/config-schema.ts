/**
 * The daemon's configuration: one JSON file, overridable by KB_* environment variables.
 * Every leaf here has a default, so a config file only needs what differs; the JSON Schema below
 * is what `loadConfig` validates after merging, and it names the bad field on failure.
 */

import { DEFAULT_PQC_ROUTING } from '../pqc/pqc-router.ts';

/** Fully resolved configuration (paths absolute after loading). */
export interface Config {
  /** Where tenants' SQLite files, the registry and the SoftHSM2 token (dev) live. */
  readonly dataDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: {
    /** CA bundle that client certificates must chain to. */
    readonly caFile: string;
    readonly certFile: string;
    readonly keyFile: string;
    /** PEM CRLs, each signed by a CA of caFile (empty: none); re-read on SIGHUP. */
    readonly crlFile: string;
    /** Connections are closed (GOAWAY) after this long, so every client re-handshakes. */
    readonly maxConnectionAgeMs: number;
    /** Calls in flight on such a connection get this long to finish. */
    readonly maxConnectionAgeGraceMs: number;
  };
  readonly hsm: {
    /** Profile name in hsm-profiles/ (e.g. "softhsm2") or a path to a profile file. */
    readonly profile: string;
    /** Overrides the profile's module path when set. */
    readonly module: string;
    readonly tokenLabel: string;
    /** File holding the user PIN (0600). KB_HSM_PIN in the environment takes precedence. */
    readonly pinFile: string;
    /** SOFTHSM2_CONF for the SoftHSM2 profile; empty leaves the environment alone. */
    readonly softhsmConf: string;
    /** Retry interval while the HSM cannot be opened at start. */
    readonly retryMs: number;
  };
  readonly metrics: { readonly enabled: boolean; readonly host: string; readonly port: number };
  readonly limits: {
    /** Larger request messages are refused undecoded (INVALID_ARGUMENT); gRPC's own cap is 4x. */
    readonly maxMessageBytes: number;
    readonly maxPlaintextBytes: number;
    readonly maxAadBytes: number;
    readonly maxBatchItems: number;
    readonly maxBatchBytes: number;
    readonly maxWrappedKeyBytes: number;
    readonly maxStreamMessageBytes: number;
    /** Calls without a deadline get this one. */
    readonly defaultDeadlineMs: number;
    /** Client deadlines further out (streams included) are clamped to this. */
    readonly maxDeadlineMs: number;
    /** HTTP/2 streams (calls) in flight per client connection (grpc.max_concurrent_streams). */
    readonly maxConcurrentStreams: number;
    /** Open EncryptStream/DecryptStream calls per identity; more are RESOURCE_EXHAUSTED. */
    readonly maxStreamsPerIdentity: number;
    /** Verify/VerifyBatch/OpenBox without a version try at most this many newest enabled versions. */
    readonly maxVerifyVersions: number;
  };
  readonly keys: {
    /** Unwrapped-key cache TTL and size bound. */
    readonly cacheTtlMs: number;
    readonly cacheMaxEntries: number;
    /** While the HSM is away, cached keys keep serving for at most this long. */
    readonly degradedServeMs: number;
    /** Per-tenant bounds on asymmetric keys (LIMIT_REACHED beyond): keys, versions per key, HSM-resident versions. */
    readonly maxAsymmetricKeysPerTenant: number;
    readonly maxVersionsPerKey: number;
    readonly maxHsmKeysPerTenant: number;
  };
  readonly lifecycle: {
    /** SIGTERM: in-flight calls get this long to finish before they are cancelled. */
    readonly shutdownGraceMs: number;
    /** Where to write {"grpc": "...", "metrics": "...", "pid": n} once ready; empty: nowhere. */
    readonly readyFile: string;
  };
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' };
  readonly audit: {
    /** Off only for experiments: every call is still passed to a (no-op) sink. */
    readonly enabled: boolean;
    /** Hash-chained audit file; checkpoints are signed by a key in the HSM. */
    readonly path: string;
    readonly checkpointEvery: number;
    readonly checkpointIntervalMs: number;
    /** Rotate the log into a new segment at this size / age (0: never); the chain continues. */
    readonly rotateBytes: number;
    readonly rotateIntervalMs: number;
  };
  /** Token buckets per identity and per tenant (RESOURCE_EXHAUSTED + retry-after-ms when empty). */
  readonly rateLimit: {
    readonly enabled: boolean;
    readonly perIdentityPerSec: number;
    readonly perIdentityBurst: number;
    readonly perTenantPerSec: number;
    readonly perTenantBurst: number;
    /** Data-plane operations per tenant per UTC day; 0: no quota. */
    readonly tenantOpsPerDay: number;
    /** Control-plane calls (Admin, Approvals, Policy, key management) per identity, never a tenant's. */
    readonly adminPerSec: number;
    readonly adminBurst: number;
    /** Refused calls per caller audited one by one; beyond, summarized (README: audit). */
    readonly refusedPerSec: number;
    readonly refusedBurst: number;
    readonly refusalSummaryMs: number;
  };
  readonly policy: {
    /** Policy document (JSON); empty: the built-in default (admins: own org; services: own tenant). */
    readonly file: string;
    /** FIPS algorithm policy on regardless of the policy document (which may also set `fipsMode`). */
    readonly fipsMode: boolean;
    /** Two-person rule for destroy tenant/customer, org key rotation and policy changes. */
    readonly twoPersonRule: boolean;
    /** Request -> approve -> execute must all happen within this window. */
    readonly approvalWindowMs: number;
    /** Approvals are deleted this long after their window ends (their steps stay in the audit log). */
    readonly approvalRetentionMs: number;
    /** The org whose admins may replace the daemon-wide policy over the API; empty: none. */
    readonly operatorOrg: string;
  };
  /** The broker as CA for its callers (keybroker.v1.Certificates). */
  readonly ca: {
    /** Lifetime of an issued certificate when the request names none. */
    readonly defaultLifetimeMs: number;
    /** Longer lifetimes are refused. */
    readonly maxLifetimeMs: number;
  };
  /**
   * Where state lives: `sqlite` (the registry and one file per tenant under dataDir) or
   * `postgres` (one database for every broker; not yet served: config/store-backend.ts).
   */
  /** `serve --workers`: broker processes on one port (1: one process; 'auto': one per core). */
  readonly serve: { readonly workers: number | 'auto' | string };
  readonly store: {
    readonly backend: 'sqlite' | 'postgres';
    readonly postgres: {
      /** postgres://user@host:port/db; the password never goes here (passwordFile). */
      readonly url: string;
      /** CA bundle the server's certificate must chain to; set: TLS required and verified. */
      readonly tlsCaFile: string;
      /** File holding the role's password (0600); empty: none (e.g. certificate or peer auth). */
      readonly passwordFile: string;
    };
  };
  /** Created on the first serve when absent (dev/test convenience); empty org: nothing. */
  readonly bootstrap: { readonly org: string; readonly tenants: readonly string[] };
  /**
   * Tenant asymmetric keys (keybroker.v1.Keys) and their post-quantum engines. Every enabled
   * engine passes its power-on self-test before the daemon serves. Routes/offload: see
   * daemon/src/pqc/pqc-router.ts (defaults from bench/pqc-bench.ts).
   */
  readonly pqc: {
    readonly enabled: boolean;
    readonly engines: readonly ('openssl' | 'liboqs')[];
    readonly routes: Readonly<Record<PqcRouteName, 'openssl' | 'liboqs'>>;
    readonly offload: readonly PqcRouteName[];
    /** Worker threads for offloaded operations; 0: one per core. */
    readonly workers: number;
    /** Unwrapped private keys cached (TTL is keys.cacheTtlMs). */
    readonly cacheMaxEntries: number;
  };
}

/** Operations the pqc router routes (pqc-router.ts PQC_OPERATIONS). */
export type PqcRouteName =
  'kem.keygen' | 'kem.encapsulate' | 'kem.decapsulate' | 'sig.keygen' | 'sig.sign' | 'sig.verify';
const PQC_OPS = ['kem.keygen', 'kem.encapsulate', 'kem.decapsulate', 'sig.keygen', 'sig.sign', 'sig.verify'];

/** Defaults; relative paths are resolved against the config file's directory. */
export const DEFAULT_CONFIG: Config = {
  dataDir: '.',
  listen: { host: '127.0.0.1', port: 7443 },
  tls: {
    caFile: 'pki/ca.pem',
    certFile: 'pki/server.pem',
    keyFile: 'pki/server-key.pem',
    crlFile: '',
    maxConnectionAgeMs: 3_600_000,
    maxConnectionAgeGraceMs: 300_000,
  },
  hsm: {
    profile: 'softhsm2',
    module: '',
    tokenLabel: 'keybroker',
    pinFile: 'secrets/hsm-user.pin',
    softhsmConf: '',
    retryMs: 2000,
  },
  metrics: { enabled: true, host: '127.0.0.1', port: 9464 },
  limits: {
    maxMessageBytes: 16 * 1024 * 1024,
    maxPlaintextBytes: 1024 * 1024,
    maxAadBytes: 16 * 1024,
    maxBatchItems: 1000,
    maxBatchBytes: 8 * 1024 * 1024,
    maxWrappedKeyBytes: 4096,
    maxStreamMessageBytes: 1024 * 1024,
    defaultDeadlineMs: 30_000,
    maxDeadlineMs: 3_600_000,
    maxConcurrentStreams: 1000,
    maxStreamsPerIdentity: 64,
    maxVerifyVersions: 4,
  },
  keys: {
    cacheTtlMs: 300_000,
    cacheMaxEntries: 10_000,
    degradedServeMs: 300_000,
    maxAsymmetricKeysPerTenant: 1000,
    maxVersionsPerKey: 100,
    maxHsmKeysPerTenant: 100,
  },
  lifecycle: { shutdownGraceMs: 10_000, readyFile: '' },
  log: { level: 'info' },
  audit: {
    enabled: true,
    path: 'audit/audit.log',
    checkpointEvery: 10_000,
    checkpointIntervalMs: 60_000,
    rotateBytes: 256 * 1024 * 1024,
    rotateIntervalMs: 0,
  },
  rateLimit: {
    enabled: true,
    perIdentityPerSec: 20_000,
    perIdentityBurst: 40_000,
    perTenantPerSec: 50_000,
    perTenantBurst: 100_000,
    tenantOpsPerDay: 0,
    adminPerSec: 100,
    adminBurst: 1000,
    refusedPerSec: 5,
    refusedBurst: 50,
    refusalSummaryMs: 10_000,
  },
  policy: {
    file: '',
    fipsMode: false,
    twoPersonRule: true,
    approvalWindowMs: 3_600_000,
    approvalRetentionMs: 90 * 86_400_000,
    operatorOrg: '',
  },
  ca: { defaultLifetimeMs: 86_400_000, maxLifetimeMs: 7 * 86_400_000 },
  serve: { workers: '1' },
  store: { backend: 'sqlite', postgres: { url: '', tlsCaFile: '', passwordFile: '' } },
  bootstrap: { org: '', tenants: [] },
  pqc: {
    enabled: true,
    // The router's measured defaults, so the two cannot drift apart.
    engines: [...DEFAULT_PQC_ROUTING.enabled],
    routes: { ...DEFAULT_PQC_ROUTING.routes },
    offload: [...DEFAULT_PQC_ROUTING.offload],
    workers: 0,
    cacheMaxEntries: 1000,
  },
};

const str = { type: 'string' } as const;
const path = { type: 'string', maxLength: 4096 } as const;
const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const pos = (max: number) => ({ type: 'integer', minimum: 1, maximum: max }) as const;
const NAME = '^[a-z0-9][a-z0-9_-]{0,62}$';

function obj(properties: Record<string, unknown>): Record<string, unknown> {
  return { type: 'object', additionalProperties: false, required: Object.keys(properties), properties };
}

/** JSON Schema of Config (draft-07, for ajv). Unknown fields are errors: typos fail fast. */
export const CONFIG_SCHEMA = obj({
  dataDir: path,
  listen: obj({ host: str, port }),
  tls: obj({
    caFile: path,
    certFile: path,
    keyFile: path,
    crlFile: path,
    maxConnectionAgeMs: { type: 'integer', minimum: 1000, maximum: 30 * 86_400_000 },
    maxConnectionAgeGraceMs: { type: 'integer', minimum: 0, maximum: 86_400_000 },
  }),
  hsm: obj({
    profile: { type: 'string', minLength: 1 },
    module: path,
    tokenLabel: { type: 'string', minLength: 1, maxLength: 32 },
    pinFile: path,
    softhsmConf: path,
    retryMs: pos(600_000),
  }),
  metrics: obj({ enabled: { type: 'boolean' }, host: str, port }),
  limits: obj({
    maxMessageBytes: pos(256 * 1024 * 1024),
    maxPlaintextBytes: pos(64 * 1024 * 1024),
    maxAadBytes: pos(1024 * 1024),
    maxBatchItems: pos(100_000),
    maxBatchBytes: pos(256 * 1024 * 1024),
    maxWrappedKeyBytes: pos(1024 * 1024),
    maxStreamMessageBytes: pos(64 * 1024 * 1024),
    defaultDeadlineMs: pos(3_600_000),
    maxDeadlineMs: pos(86_400_000),
    maxConcurrentStreams: pos(1_000_000),
    maxStreamsPerIdentity: pos(1_000_000),
    maxVerifyVersions: pos(10_000),
  }),
  keys: obj({
    cacheTtlMs: pos(86_400_000),
    cacheMaxEntries: pos(10_000_000),
    degradedServeMs: { type: 'integer', minimum: 0, maximum: 86_400_000 },
    maxAsymmetricKeysPerTenant: pos(10_000_000),
    maxVersionsPerKey: pos(10_000_000),
    maxHsmKeysPerTenant: pos(10_000_000),
  }),
  lifecycle: obj({ shutdownGraceMs: pos(3_600_000), readyFile: path }),
  log: obj({ level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] } }),
  audit: obj({
    enabled: { type: 'boolean' },
    path: { type: 'string', minLength: 1, maxLength: 4096 },
    checkpointEvery: pos(100_000_000),
    checkpointIntervalMs: pos(86_400_000),
    rotateBytes: { type: 'integer', minimum: 0, maximum: 2 ** 50 },
    rotateIntervalMs: { type: 'integer', minimum: 0, maximum: 366 * 86_400_000 },
  }),
  rateLimit: obj({
    enabled: { type: 'boolean' },
    perIdentityPerSec: pos(100_000_000),
    perIdentityBurst: pos(100_000_000),
    perTenantPerSec: pos(100_000_000),
    perTenantBurst: pos(100_000_000),
    tenantOpsPerDay: { type: 'integer', minimum: 0, maximum: 1e15 },
    adminPerSec: pos(100_000_000),
    adminBurst: pos(100_000_000),
    refusedPerSec: pos(100_000_000),
    refusedBurst: pos(100_000_000),
    refusalSummaryMs: pos(3_600_000),
  }),
  policy: obj({
    file: path,
    fipsMode: { type: 'boolean' },
    twoPersonRule: { type: 'boolean' },
    approvalWindowMs: pos(7 * 86_400_000),
    approvalRetentionMs: { type: 'integer', minimum: 0, maximum: 3650 * 86_400_000 },
    operatorOrg: { anyOf: [{ const: '' }, { type: 'string', pattern: NAME }] },
  }),
  ca: obj({ defaultLifetimeMs: pos(366 * 86_400_000), maxLifetimeMs: pos(366 * 86_400_000) }),
  serve: obj({
    workers: {
      anyOf: [
        { type: 'integer', minimum: 1, maximum: 1024 },
        { type: 'string', pattern: '^(auto|[1-9][0-9]{0,3})$' },
      ],
    },
  }),
  store: obj({
    backend: { enum: ['sqlite', 'postgres'] },
    postgres: obj({
      url: { anyOf: [{ const: '' }, { type: 'string', pattern: '^postgres(ql)?://', maxLength: 4096 }] },
      tlsCaFile: path,
      passwordFile: path,
    }),
  }),
  bootstrap: obj({
    org: { anyOf: [{ const: '' }, { type: 'string', pattern: NAME }] },
    tenants: {
      type: 'array',
      maxItems: 100,
      items: { type: 'string', pattern: NAME, not: { const: 'admin' } },
    },
  }),
  pqc: obj({
    enabled: { type: 'boolean' },
    engines: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { enum: ['openssl', 'liboqs'] },
    },
    routes: obj(Object.fromEntries(PQC_OPS.map((op) => [op, { enum: ['openssl', 'liboqs'] }]))),
    offload: { type: 'array', uniqueItems: true, items: { enum: PQC_OPS } },
    workers: { type: 'integer', minimum: 0, maximum: 256 },
    cacheMaxEntries: pos(10_000_000),
  }),
});
