/** What KeyBroker.open takes: the HSM, the data directory, caches, timers and the logger. */
import type { Hsm } from '../hsm/hsm.ts';
import type { AsymmetricKeysOptions } from './asymmetric-keys.ts';

/** The pino subset KeyBroker logs through. Never given key bytes, plaintext or ciphertext. */
export interface KeyBrokerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface KeyBrokerOptions {
  readonly hsm: Hsm;
  readonly dataDir: string;
  /** Unwrapped TEK/CEK cache: TTL (default 5 min) and entries (default 10,000). */
  readonly cache?: { readonly ttlMs?: number; readonly maxEntries?: number };
  /** How long past their TTL cached keys keep serving while the HSM is unavailable (default 5 min). */
  readonly degradedServeMs?: number;
  readonly clock?: () => Date;
  readonly logger?: KeyBrokerLogger;
  /** The audit checkpoint public key (PEM), published with the receipt key (brokerKeys). */
  readonly auditCheckpointKeyPem?: () => string | undefined;
  /** Audit chain head, recorded in shred receipts. */
  readonly auditHead?: () => { seq: number; hash: string };
  /** Open tenant files kept (LRU, default 256). */
  readonly maxOpenTenantFiles?: number;
  /** Tenant/customer metadata rows cached (LRU, default 50,000). */
  readonly metadataCacheEntries?: number;
  /** Shreds of one org arriving within this window share one shred epoch (default 20 ms). */
  readonly shredBatchMs?: number;
  /** Usage counters flushed to the stores this often (default 1 s). */
  readonly usageFlushMs?: number;
  /** Default rotation period for new tenants and customers (default 90 days). */
  readonly defaultRotationPeriodSeconds?: number;
  /** HSM calls the hierarchy keeps in flight (default 1; see gated-hsm.ts for why). */
  readonly hsmConcurrency?: number;
  /** Retry unfinished shreds (failed epochs) this often (default 60 s). */
  readonly shredRetryMs?: number;
  /** Run rotateDueKeys this often (0 = never; the daemon may call it itself). Default 0. */
  readonly rotationScanMs?: number;
  /** Tenant asymmetric keys (post-quantum, Ed25519, HSM ECDSA); absent: `asymmetric` is undefined. */
  readonly pqc?: AsymmetricKeysOptions;
  /** Several broker processes on one data dir (serve --workers); absent: a single process. */
  readonly cluster?: KeyBrokerCluster;
}

/** What a broker among several processes needs from the others (see daemon/src/cluster/). */
export interface KeyBrokerCluster {
  /** Whether this process runs the singletons (shred resume at open, the shred retry timer). */
  readonly singletons: () => boolean;
  /** Run a shred, epoch or OEK rotation while no other process runs one. */
  readonly exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** A write the API did not ask for (the data plane rotating a CEK at its usage limit). */
  readonly changed: (scope: { org: string; tenant: string; customer?: string }) => void;
  /** Before a shred receipt is signed: every other live process has dropped the shredded keys. */
  readonly beforeReceipt: (scope: { org: string; tenant: string; customer?: string }) => Promise<void>;
}
