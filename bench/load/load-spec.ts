/** What the runner asks a load-generator process to do (passed as a JSON file path). */

/** Client side of mTLS: the CA that signed the server, and one or more client identities. */
export interface ClientTls {
  readonly caCert: string;
  /** Channel i uses identity i % identities.length (one identity = one tenant for the daemon). */
  readonly identities: readonly { readonly cert: string; readonly key: string }[];
  /** Name to check the server certificate against when it differs from the target host. */
  readonly serverNameOverride?: string;
}

/** The operation each call performs. `daemon` ops are resolved by bench/load/daemon-ops.ts. */
export type OpSpec =
  | { readonly kind: 'echo'; readonly bytes: number }
  /** A post-quantum operation through the Keys service (bench/load/keys-ops.ts). */
  | { readonly kind: 'keys'; readonly op: import('./keys-ops.ts').KeysOpName }
  /** BlindIndexes.ComputeBlindIndex(Batch) on the index the phase defines (blind-index-ops.ts). */
  | { readonly kind: 'blind-index'; readonly values: number }
  | { readonly kind: 'echo-batch'; readonly items: number; readonly bytes: number }
  | { readonly kind: 'echo-stream'; readonly totalBytes: number; readonly chunkBytes: number }
  | {
      readonly kind: 'daemon';
      readonly rpc: string;
      readonly bytes: number;
      /** Items per EncryptBatch call. */
      readonly items?: number;
      /** For streams: total bytes per call and bytes per chunk. */
      readonly totalBytes?: number;
      readonly chunkBytes?: number;
      /** Distinct customers to spread calls over (cold-cache traffic). */
      readonly customers?: number;
    };

export interface LoadSpec {
  readonly target: string;
  readonly tls: ClientTls;
  readonly op: OpSpec;
  readonly concurrencies: readonly number[];
  readonly runs: number;
  readonly warmupS: number;
  readonly durationS: number;
  /** A window never ends before this many calls completed... */
  readonly minCalls: number;
  /** ...nor runs past this many (bounded load). */
  readonly maxCalls: number;
  /** Calls the warm-up must complete (default: 2 × concurrency, at most minCalls). */
  readonly warmupCalls?: number;
  /** Long-lived channels (TCP+TLS connections) to spread calls over; min(this, concurrency). */
  readonly maxChannels: number;
  /** Proto directory of the daemon (for `daemon` ops). */
  readonly protoDir?: string;
  /** Server process to read CPU and peak RSS of. */
  readonly serverPid?: number;
  /** Per-call deadline. */
  readonly callTimeoutMs: number;
  /** Random-tenant traffic: mint identities for random tenants and reconnect slots as them. */
  readonly rotation?: TenantRotation;
  /**
   * A ceiling measured in the same window: each run's duration is cut into `slices` that
   * alternate between this spec's target and the ceiling's (A B A B ...), so both see the same
   * seconds of a host whose speed drifts. The ceiling's runs are printed under its scenario name.
   */
  readonly alternate?: AlternateTarget;
}

export interface AlternateTarget {
  readonly scenario: string;
  readonly target: string;
  readonly tls: ClientTls;
  readonly op: OpSpec;
  readonly serverPid?: number;
  /** Slices per side in each run (default 4). */
  readonly slices?: number;
}

export interface TenantRotation {
  /** The daemon's CA (certificate and key) that signs tenant identities. */
  readonly caCert: string;
  readonly caKey: string;
  readonly org: string;
  /** Tenants 0..tenants-1 exist, named by benchTenant(i). */
  readonly tenants: number;
  /** How many random-tenant identities to mint before the windows (the pool rotated through). */
  readonly identities: number;
  /** Calls a connection serves before it is replaced by one for another random tenant. */
  readonly callsPerConnection: number;
}

/** One JSON line the load generator prints per measured run. */
export interface RunLine {
  readonly type: 'run';
  /** Set by processes that measure several scenarios (the in-process ceilings). */
  readonly scenario?: string;
  readonly concurrency: number;
  readonly run: number;
  readonly sample: import('../lib/result-types.ts').RunSample;
  readonly firstError?: string;
  /** With tenant rotation: reconnections so far and distinct identities used. */
  readonly connections?: { readonly rotations: number; readonly identitiesUsed: number };
}
