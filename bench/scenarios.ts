/**
 * The scenario catalogue: every number the suite can produce, its phase (which process serves
 * it), its concurrency sweep and the ceilings it is read against. `--only` names entries here.
 */
import type { InProcessOp } from './ceilings/in-process-crypto.ts';
import type { RecordKind } from './lib/result-types.ts';
import type { KeysOpName } from './load/keys-ops.ts';
import type { OpSpec } from './load/load-spec.ts';

/** Phases run in this order; each daemon phase gets a fresh daemon, token and data dir. */
export const PHASES = [
  'in-process',
  'pkcs11',
  'echo',
  'daemon',
  'daemon-cold',
  'daemon-unaudited',
  'daemon-tenants-1k',
  'daemon-tenants-10k',
  'daemon-tenants-100k',
] as const;
export type PhaseName = (typeof PHASES)[number];

export interface Sweep {
  readonly full: readonly number[];
  readonly quick: readonly number[];
}

export interface Scenario {
  readonly name: string;
  readonly kind: RecordKind;
  readonly group: string;
  readonly description: string;
  readonly unit: 'req/s' | 'items/s' | 'MiB/s' | 'ops/s';
  readonly payloadBytes: number;
  readonly phase: PhaseName;
  readonly concurrency: Sweep;
  /** What the load generator calls (echo and daemon phases). */
  readonly op?: OpSpec;
  /** What the in-process ceiling process runs (in-process phase). */
  readonly inProcess?: InProcessOp;
  /** Ceiling scenarios this one is read against (ratio = this / ceiling). */
  readonly ceilings?: { readonly echo?: string; readonly inProcess?: string; readonly pkcs11?: string };
  /** Runs only in full mode (too slow for --quick). */
  readonly fullOnly?: boolean;
  /** Runs only in quick mode (a smaller stand-in for a full-only scenario). */
  readonly quickOnly?: boolean;
  /**
   * An echo scenario measured again inside this scenario's daemon phase, alternating in slices
   * with each of this scenario's windows (same concurrency and run: A B A B ...): the ceiling it
   * is read against then comes from the same seconds, not from a phase minutes earlier.
   */
  readonly pairedEcho?: string;
  /**
   * An in-process scenario measured again inside this scenario's daemon phase, once right before
   * each of this scenario's runs: its in-process ceiling then comes from the same minute.
   */
  readonly pairedInProcess?: string;
  /** An Admin operation the runner times itself (tenants phases). */
  readonly admin?: 'create-tenant' | 'create-tenants-bulk' | 'rotate-org-key' | 'destroy-tenant';
}

const SWEEP: Sweep = { full: [1, 4, 16, 64, 256], quick: [1, 16] };
/** Secondary scenarios: enough points to see the knee, one point in --quick. */
const SMALL: Sweep = { full: [1, 16, 64], quick: [16] };
const ONE: Sweep = { full: [1], quick: [1] };
const MIB = 1024 * 1024;
/** Customers the cold/warm cache scenarios spread calls over. */
const CUSTOMERS = 256;
const STREAM = 64 * MIB;
const CHUNK = 64 * 1024;

/** The many-tenant scenarios for one tenant count: traffic, provisioning, OEK rotation, destroy. */
function manyTenants(
  tag: string,
  count: number,
  phase: PhaseName,
  mode: 'quick' | 'full',
  singleCreates: number,
): Scenario[] {
  const bulkBatch = Math.min(1000, count - singleCreates);
  const n = count.toLocaleString('en-US');
  const flags = mode === 'quick' ? { quickOnly: true } : { fullOnly: true };
  const common = { kind: 'daemon', group: `many tenants (${n})`, phase, ...flags } as const;
  // Admin operations are charted apart from the traffic: ops/s and req/s do not share an axis.
  const admin = { ...common, group: `tenant lifecycle (${n} tenants)` } as const;
  return [
    {
      ...admin,
      name: `tenants-${tag}-create-tenant`,
      description: `Admin.CreateTenant, one tenant per call, for the first ${singleCreates.toLocaleString('en-US')} of ${n} tenants (TEK wrapped in the HSM, tenant SQLite file created with its own fsyncs, registry row)`,
      unit: 'ops/s',
      payloadBytes: 0,
      concurrency: { full: [32], quick: [32] },
      admin: 'create-tenant',
    },
    {
      ...admin,
      name: `tenants-${tag}-create-tenants-bulk`,
      description: `Admin.CreateTenants, ${bulkBatch.toLocaleString('en-US')} tenants per call, for the other ${(count - singleCreates).toLocaleString('en-US')} of ${n} tenants (one durability barrier per call: files fsynced, then one registry transaction); ops/s = tenants/s, latency per call`,
      unit: 'ops/s',
      payloadBytes: 0,
      concurrency: { full: [2], quick: [2] },
      admin: 'create-tenants-bulk',
    },
    {
      ...common,
      name: `tenants-${tag}-encrypt-1k`,
      description: `Crypto.Encrypt of 1 KiB over ${n} tenants: each connection serves 25 calls (10 in --quick), then reconnects as another random tenant (handshake included)`,
      unit: 'req/s',
      payloadBytes: 1024,
      concurrency: SMALL,
      op: { kind: 'daemon', rpc: 'encrypt', bytes: 1024 },
      ceilings: { echo: 'echo-1k', inProcess: 'inproc-encrypt-1k' },
    },
    {
      ...admin,
      name: `tenants-${tag}-rotate-org-key`,
      description: `Admin.RotateOrgKey with ${n} tenants (every TEK rewrapped under the new OEK version)`,
      unit: 'ops/s',
      payloadBytes: 0,
      concurrency: ONE,
      admin: 'rotate-org-key',
    },
    {
      ...admin,
      name: `tenants-${tag}-destroy-tenant`,
      description: `Admin.DestroyTenant with ${n} tenants (shred epoch: OEK rotation, survivors rewrapped, C_DestroyObject); concurrent destroys share epochs`,
      unit: 'ops/s',
      payloadBytes: 0,
      concurrency: { full: [1, 8], quick: [1, 8] },
      admin: 'destroy-tenant',
    },
  ];
}

type PairedOp = DistributiveOmit<InProcessOp, 'name'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** `<ceiling>-paired`: the in-process ceiling again, run in the daemon phase beside a batch scenario. */
function pairedInProcessOf(ceiling: string, group: string, op: PairedOp, payloadBytes = 0): Scenario {
  const name = `${ceiling}-paired`;
  return {
    name,
    kind: 'ceiling-in-process',
    group,
    description: `${ceiling} again, in the daemon phase: one window right before each run of the batch scenario read against it`,
    unit: 'ops/s',
    payloadBytes,
    phase: 'daemon',
    concurrency: ONE,
    inProcess: { ...op, name } as InProcessOp,
  };
}

/** Post-quantum operations through the Keys service, with Node's native engine in-process as ceiling. */
function postQuantum(): Scenario[] {
  const group = 'post-quantum (Keys service)';
  const ops: { op: KeysOpName; what: string; inProcess?: InProcessOp['kind'] }[] = [
    { op: 'mlkem768-encapsulate', what: 'Keys.Encapsulate, ML-KEM-768', inProcess: 'mlkem768-encapsulate' },
    { op: 'mlkem768-decapsulate', what: 'Keys.Decapsulate, ML-KEM-768', inProcess: 'mlkem768-decapsulate' },
    { op: 'xwing-decapsulate', what: 'Keys.Decapsulate, X-Wing' },
    { op: 'mldsa65-sign', what: 'Keys.Sign, ML-DSA-65, 256-byte message', inProcess: 'mldsa65-sign' },
    { op: 'mldsa65-verify', what: 'Keys.Verify, ML-DSA-65, 256-byte message', inProcess: 'mldsa65-verify' },
    { op: 'composite-sign', what: 'Keys.Sign, composite ML-DSA-65 + ECDSA P-256' },
  ];
  // Batch RPCs: where a caller reaches the in-process rate (items/s against one operation's rate).
  const batches: { op: KeysOpName; what: string; inProcess: InProcessOp['kind'] }[] = [
    { op: 'mldsa65-sign-batch64', what: 'Keys.SignBatch, ML-DSA-65, 64 × 256 B', inProcess: 'mldsa65-sign' },
    {
      op: 'mldsa65-verify-batch64',
      what: 'Keys.VerifyBatch, ML-DSA-65, 64 × 256 B',
      inProcess: 'mldsa65-verify',
    },
    {
      op: 'mlkem768-decapsulate-batch64',
      what: 'Keys.DecapsulateBatch, ML-KEM-768, 64 ciphertexts',
      inProcess: 'mlkem768-decapsulate',
    },
    {
      op: 'mlkem768-encapsulate-batch64',
      what: 'Keys.EncapsulateBatch, ML-KEM-768, 64 encapsulations',
      inProcess: 'mlkem768-encapsulate',
    },
    // An ML-KEM operation costs ~30-40 µs, so a 64-item call still spends a few µs an item on
    // the call itself; a bulk caller sends more (the daemon takes up to 1,000 items a call).
    {
      op: 'mlkem768-decapsulate-batch256',
      what: 'Keys.DecapsulateBatch, ML-KEM-768, 256 ciphertexts',
      inProcess: 'mlkem768-decapsulate',
    },
    {
      op: 'mlkem768-encapsulate-batch256',
      what: 'Keys.EncapsulateBatch, ML-KEM-768, 256 encapsulations',
      inProcess: 'mlkem768-encapsulate',
    },
  ];
  const out: Scenario[] = [];
  for (const b of batches) {
    // One paired ceiling per operation: it runs before each run of every batch size read against it.
    if (!out.some((s) => s.name === `inproc-${b.inProcess}-paired`))
      out.push(pairedInProcessOf(`inproc-${b.inProcess}`, group, { kind: b.inProcess } as PairedOp));
    out.push({
      name: `pqc-${b.op}`,
      kind: 'daemon',
      group,
      description: `${b.what} through the daemon, items/s (ceiling: the in-process single operation; batches of 8+ run on the worker pool, one share per worker)`,
      unit: 'items/s',
      payloadBytes: 0,
      phase: 'daemon',
      concurrency: SMALL,
      op: { kind: 'keys', op: b.op },
      ceilings: { inProcess: `inproc-${b.inProcess}` },
      pairedInProcess: `inproc-${b.inProcess}-paired`,
    });
  }
  for (const o of ops) {
    if (o.inProcess !== undefined) {
      out.push({
        name: `inproc-${o.op}`,
        kind: 'ceiling-in-process',
        group,
        description: `in-process ${o.op} with Node's native OpenSSL 3.5, one core`,
        unit: 'ops/s',
        payloadBytes: 0,
        phase: 'in-process',
        concurrency: ONE,
        inProcess: { name: `inproc-${o.op}`, kind: o.inProcess } as InProcessOp,
      });
    }
    out.push({
      name: `pqc-${o.op}`,
      kind: 'daemon',
      group,
      description: `${o.what} through the daemon (key created by the calling tenant)`,
      unit: 'req/s',
      payloadBytes: 0,
      phase: 'daemon',
      concurrency: SMALL,
      op: { kind: 'keys', op: o.op },
      ceilings: { echo: 'echo-32', ...(o.inProcess !== undefined ? { inProcess: `inproc-${o.op}` } : {}) },
    });
  }
  return out;
}

/** Keyed blind indexes (BlindIndexes service) against in-process normalization + HMAC-SHA256. */
function blindIndexes(): Scenario[] {
  const group = 'blind indexes';
  const ceiling = 'inproc-blind-index-hmac';
  const out: Scenario[] = [
    {
      name: ceiling,
      kind: 'ceiling-in-process',
      group,
      description:
        'in-process blind-index token: NFKC, lowercase, trim and HMAC-SHA256 of a ~25-byte email, one core',
      unit: 'ops/s',
      payloadBytes: 25,
      phase: 'in-process',
      concurrency: ONE,
      inProcess: { name: ceiling, kind: 'blind-index-hmac' },
    },
    pairedInProcessOf(ceiling, group, { kind: 'blind-index-hmac' }, 25),
    {
      name: 'blind-index-compute',
      kind: 'daemon',
      group,
      description: 'BlindIndexes.ComputeBlindIndex of one ~25-byte email (normalized, 32-byte token)',
      unit: 'req/s',
      payloadBytes: 25,
      phase: 'daemon',
      concurrency: SMALL,
      op: { kind: 'blind-index', values: 1 },
      ceilings: { echo: 'echo-32', inProcess: ceiling },
    },
  ];
  for (const n of [64, 256])
    out.push({
      name: `blind-index-compute-batch${n}`,
      kind: 'daemon',
      group,
      description: `BlindIndexes.ComputeBlindIndexBatch, ${n} emails per call, items/s (ceiling: the in-process token, measured right before each run)`,
      unit: 'items/s',
      payloadBytes: 25,
      phase: 'daemon',
      concurrency: SMALL,
      op: { kind: 'blind-index', values: n },
      ceilings: { inProcess: ceiling },
      pairedInProcess: `${ceiling}-paired`,
    });
  return out;
}

/** The 1 KiB echo measured beside Encrypt/Decrypt 1 KiB (their `pairedEcho`). */
export const PAIRED_ECHO_1K = 'echo-1k-paired';

const SIZES = [
  { tag: '32', bytes: 32, group: '32 B' },
  { tag: '1k', bytes: 1024, group: '1 KiB' },
  { tag: '64k', bytes: 64 * 1024, group: '64 KiB' },
] as const;

function sized(): Scenario[] {
  const out: Scenario[] = [];
  for (const s of SIZES) {
    out.push({
      name: `echo-${s.tag}`,
      kind: 'ceiling-echo',
      group: s.group,
      description: `empty gRPC echo of ${s.group} (same mTLS, payload, client)`,
      unit: 'req/s',
      payloadBytes: s.bytes,
      phase: 'echo',
      concurrency: s.tag === '1k' ? SWEEP : SMALL,
      op: { kind: 'echo', bytes: s.bytes },
    });
    if (s.tag === '1k')
      out.push({
        name: PAIRED_ECHO_1K,
        kind: 'ceiling-echo',
        group: s.group,
        description:
          'echo-1k again, in the daemon phase: alternating in slices with each Encrypt and Decrypt 1 KiB window of the same concurrency and run (the targets read these)',
        unit: 'req/s',
        payloadBytes: s.bytes,
        phase: 'daemon',
        concurrency: SWEEP,
        op: { kind: 'echo', bytes: s.bytes },
      });
    for (const dir of ['encrypt', 'decrypt'] as const) {
      out.push({
        name: `inproc-${dir}-${s.tag}`,
        kind: 'ceiling-in-process',
        group: s.group,
        description: `in-process AES-256-GCM + HKDF-SHA256 ${dir} of ${s.group}, one core`,
        unit: 'ops/s',
        payloadBytes: s.bytes,
        phase: 'in-process',
        concurrency: ONE,
        inProcess: { name: `inproc-${dir}-${s.tag}`, kind: dir, bytes: s.bytes },
      });
      out.push({
        name: `${dir}-${s.tag}`,
        kind: 'daemon',
        group: s.group,
        description: `Crypto.${dir === 'encrypt' ? 'Encrypt' : 'Decrypt'} of ${s.group}, warm cache`,
        unit: 'req/s',
        payloadBytes: s.bytes,
        phase: 'daemon',
        // The issue asks for 1 KiB at 1-256; the other sizes get the shorter sweep.
        concurrency: s.tag === '1k' ? SWEEP : SMALL,
        op: { kind: 'daemon', rpc: dir, bytes: s.bytes },
        ceilings: { echo: `echo-${s.tag}`, inProcess: `inproc-${dir}-${s.tag}` },
        ...(s.tag === '1k' ? { pairedEcho: PAIRED_ECHO_1K } : {}),
      });
    }
  }
  return out;
}

/** Every scenario, ceilings first within each group. */
export const SCENARIOS: readonly Scenario[] = [
  ...sized(),
  {
    name: 'encrypt-1k-unaudited',
    kind: 'daemon',
    group: '1 KiB',
    description:
      'Crypto.Encrypt of 1 KiB with the audit sink switched off (audit.enabled=false): the cost of the audit is encrypt-1k against this',
    unit: 'req/s',
    payloadBytes: 1024,
    phase: 'daemon-unaudited',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'encrypt', bytes: 1024 },
    ceilings: { echo: 'echo-1k', inProcess: 'inproc-encrypt-1k' },
  },
  {
    name: 'echo-batch-100x1k',
    kind: 'ceiling-echo',
    group: 'batch 100 × 1 KiB',
    description: 'echo of 100 × 1 KiB items in one message',
    unit: 'items/s',
    payloadBytes: 1024,
    phase: 'echo',
    concurrency: SMALL,
    op: { kind: 'echo-batch', items: 100, bytes: 1024 },
  },
  pairedInProcessOf('inproc-encrypt-1k', 'batch 100 × 1 KiB', { kind: 'encrypt', bytes: 1024 }, 1024),
  {
    name: 'encrypt-batch-100x1k',
    kind: 'daemon',
    group: 'batch 100 × 1 KiB',
    description: 'Crypto.EncryptBatch of 100 × 1 KiB',
    unit: 'items/s',
    payloadBytes: 1024,
    phase: 'daemon',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'encrypt-batch', bytes: 1024, items: 100 },
    ceilings: { echo: 'echo-batch-100x1k', inProcess: 'inproc-encrypt-1k' },
    pairedInProcess: 'inproc-encrypt-1k-paired',
  },
  {
    name: 'inproc-data-key',
    kind: 'ceiling-in-process',
    group: 'data keys and rewrap',
    description: 'in-process: 32 random bytes sealed under an HKDF-derived key',
    unit: 'ops/s',
    payloadBytes: 32,
    phase: 'in-process',
    concurrency: ONE,
    inProcess: { name: 'inproc-data-key', kind: 'data-key' },
  },
  {
    name: 'generate-data-key',
    kind: 'daemon',
    group: 'data keys and rewrap',
    description: 'Crypto.GenerateDataKey (32-byte key), warm cache',
    unit: 'req/s',
    payloadBytes: 32,
    phase: 'daemon',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'generate-data-key', bytes: 32 },
    ceilings: { echo: 'echo-32', inProcess: 'inproc-data-key' },
  },
  {
    name: 'inproc-rewrap-1k',
    kind: 'ceiling-in-process',
    group: 'data keys and rewrap',
    description: 'in-process decrypt + encrypt of 1 KiB',
    unit: 'ops/s',
    payloadBytes: 1024,
    phase: 'in-process',
    concurrency: ONE,
    inProcess: { name: 'inproc-rewrap-1k', kind: 'rewrap', bytes: 1024 },
  },
  {
    name: 'rewrap-1k',
    kind: 'daemon',
    group: 'data keys and rewrap',
    description: 'Crypto.Rewrap of a 1 KiB ciphertext',
    unit: 'req/s',
    payloadBytes: 1024,
    phase: 'daemon',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'rewrap', bytes: 1024 },
    ceilings: { echo: 'echo-1k', inProcess: 'inproc-rewrap-1k' },
  },
  {
    name: 'inproc-stream-64m',
    kind: 'ceiling-in-process',
    group: 'stream 64 MiB',
    description: 'in-process AES-256-GCM over 64 MiB in 64 KiB chunks',
    unit: 'MiB/s',
    payloadBytes: STREAM,
    phase: 'in-process',
    concurrency: ONE,
    inProcess: { name: 'inproc-stream-64m', kind: 'stream', totalBytes: STREAM, chunkBytes: CHUNK },
  },
  {
    name: 'echo-stream-64m',
    kind: 'ceiling-echo',
    group: 'stream 64 MiB',
    description: 'bidirectional echo stream of 64 MiB in 64 KiB messages',
    unit: 'MiB/s',
    payloadBytes: STREAM,
    phase: 'echo',
    concurrency: ONE,
    op: { kind: 'echo-stream', totalBytes: STREAM, chunkBytes: CHUNK },
  },
  {
    name: 'encrypt-stream-64m',
    kind: 'daemon',
    group: 'stream 64 MiB',
    description: 'Crypto.EncryptStream of 64 MiB in 64 KiB messages',
    unit: 'MiB/s',
    payloadBytes: STREAM,
    phase: 'daemon',
    concurrency: ONE,
    op: { kind: 'daemon', rpc: 'encrypt-stream', bytes: CHUNK, totalBytes: STREAM, chunkBytes: CHUNK },
    ceilings: { echo: 'echo-stream-64m', inProcess: 'inproc-stream-64m' },
  },
  ...postQuantum(),
  ...blindIndexes(),
  {
    name: 'pkcs11-wrap',
    kind: 'ceiling-pkcs11',
    group: 'HSM',
    description: 'raw pkcs11js: C_CreateObject + C_WrapKey (AES-KWP) + C_DestroyObject, sync',
    unit: 'ops/s',
    payloadBytes: 32,
    phase: 'pkcs11',
    concurrency: ONE,
  },
  {
    name: 'pkcs11-unwrap',
    kind: 'ceiling-pkcs11',
    group: 'HSM',
    description: 'raw pkcs11js: C_UnwrapKey (AES-KWP) + read CKA_VALUE + C_DestroyObject, sync',
    unit: 'ops/s',
    payloadBytes: 32,
    phase: 'pkcs11',
    concurrency: ONE,
  },
  {
    name: 'pkcs11-unwrap-async',
    kind: 'ceiling-pkcs11',
    group: 'HSM',
    description: 'raw pkcs11js: the unwrap with C_UnwrapKeyAsync, one session per worker',
    unit: 'ops/s',
    payloadBytes: 32,
    phase: 'pkcs11',
    concurrency: { full: [1, 2, 4], quick: [1, 4] },
  },
  {
    name: 'pkcs11-gcm-1k',
    kind: 'ceiling-pkcs11',
    group: 'HSM',
    description: 'raw pkcs11js: AES-GCM encrypt of 1 KiB with a token key, sync',
    unit: 'ops/s',
    payloadBytes: 1024,
    phase: 'pkcs11',
    concurrency: ONE,
  },
  {
    name: 'encrypt-1k-cold',
    kind: 'daemon',
    group: 'HSM',
    description: `Crypto.Encrypt of 1 KiB spread over ${CUSTOMERS} customers, 1-entry cache with a 1 ms TTL (cold: keys unwrapped per call)`,
    unit: 'req/s',
    payloadBytes: 1024,
    phase: 'daemon-cold',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'encrypt', bytes: 1024, customers: CUSTOMERS },
    ceilings: { echo: 'echo-1k', pkcs11: 'pkcs11-unwrap' },
  },
  {
    name: 'encrypt-1k-warm-customers',
    kind: 'daemon',
    group: 'HSM',
    description: `Crypto.Encrypt of 1 KiB spread over ${CUSTOMERS} customers, default cache (warm)`,
    unit: 'req/s',
    payloadBytes: 1024,
    phase: 'daemon',
    concurrency: SMALL,
    op: { kind: 'daemon', rpc: 'encrypt', bytes: 1024, customers: CUSTOMERS },
    ceilings: { echo: 'echo-1k', inProcess: 'inproc-encrypt-1k' },
  },
  // The first tenants through CreateTenant (its rate, comparable with older runs), the rest
  // through CreateTenants: 100,000 tenants one by one would take ~17 minutes of the 30.
  ...manyTenants('1k', 1_000, 'daemon-tenants-1k', 'quick', 200),
  ...manyTenants('10k', 10_000, 'daemon-tenants-10k', 'full', 1_000),
  ...manyTenants('100k', 100_000, 'daemon-tenants-100k', 'full', 1_000),
];

/**
 * Scenarios selected by `--only` (exact names or `prefix*`), minus full-only ones in quick mode
 * (and the quick stand-ins in full mode).
 */
export function selectScenarios(only: readonly string[] | undefined, quick: boolean): Scenario[] {
  const matches = (name: string): boolean =>
    only === undefined || only.some((o) => (o.endsWith('*') ? name.startsWith(o.slice(0, -1)) : name === o));
  return SCENARIOS.filter(
    (s) => matches(s.name) && !(quick && s.fullOnly === true) && !(!quick && s.quickOnly === true),
  );
}

/** Names in `only` that match nothing (a typo should fail loudly, not run an empty suite). */
export function unknownScenarioNames(only: readonly string[]): string[] {
  return only.filter((o) =>
    o.endsWith('*')
      ? !SCENARIOS.some((s) => s.name.startsWith(o.slice(0, -1)))
      : !SCENARIOS.some((s) => s.name === o),
  );
}
