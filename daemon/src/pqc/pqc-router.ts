/**
 * Which engine serves which operation: configuration, with defaults from bench/pqc-bench.ts on
 * this machine class (OpenSSL is faster for ML-KEM and ML-DSA verify; liboqs-wasm for ML-DSA
 * signing). Routing also follows capabilities, never silently: a non-empty ML-DSA context goes to
 * an engine that supports contexts, and seed expansion to one that can keygen from seed.
 */
import { KbError } from '../errors.ts';
import { ENGINE_NAMES, type EngineName, type PqcEngine, type PqcPrivateKey } from './pqc-engine.ts';
import { isKemAlgorithm, type PqcAlgorithm, type SigAlgorithm } from './pqc-params.ts';

export const PQC_OPERATIONS = [
  'kem.keygen',
  'kem.encapsulate',
  'kem.decapsulate',
  'sig.keygen',
  'sig.sign',
  'sig.verify',
] as const;
export type PqcOperation = (typeof PQC_OPERATIONS)[number];

export interface PqcRoutingConfig {
  /** Engines to instantiate and self-test; at least one must keygen from seed (openssl). */
  readonly enabled: readonly EngineName[];
  readonly routes: Readonly<Record<PqcOperation, EngineName>>;
  /**
   * Operations to run on PqcWorkerPool rather than in-process. Only the slow ones: on this
   * machine class the pool's per-call overhead (~10-20 µs of event-loop CPU) costs more than a
   * 50 µs encapsulation saves (bench/pqc-bench.ts).
   */
  readonly offload: readonly PqcOperation[];
}

/** Defaults measured by bench/pqc-bench.ts (see the README pqc section for the numbers). */
export const DEFAULT_PQC_ROUTING: PqcRoutingConfig = {
  enabled: ['openssl', 'liboqs'],
  routes: {
    'kem.keygen': 'openssl',
    'kem.encapsulate': 'openssl',
    'kem.decapsulate': 'openssl',
    'sig.keygen': 'openssl',
    'sig.sign': 'liboqs',
    'sig.verify': 'openssl',
  },
  offload: ['kem.keygen', 'sig.keygen', 'sig.sign'],
};

/** Check a routing config; throws FAILED_PRECONDITION naming the bad field. */
export function validatePqcRouting(config: PqcRoutingConfig): void {
  if (!Array.isArray(config.enabled) || config.enabled.length === 0) {
    throw new KbError('FAILED_PRECONDITION', 'pqc.enabled must list at least one engine');
  }
  for (const e of config.enabled) {
    if (!ENGINE_NAMES.includes(e))
      throw new KbError('FAILED_PRECONDITION', `pqc.enabled: unknown engine ${String(e)}`);
  }
  if (!config.enabled.includes('openssl')) {
    throw new KbError(
      'FAILED_PRECONDITION',
      'pqc.enabled must include openssl (the only engine that expands stored seeds)',
    );
  }
  for (const op of PQC_OPERATIONS) {
    const e = config.routes[op];
    if (!config.enabled.includes(e))
      throw new KbError('FAILED_PRECONDITION', `pqc.routes.${op}: engine ${String(e)} is not enabled`);
  }
  for (const op of config.offload ?? []) {
    if (!PQC_OPERATIONS.includes(op))
      throw new KbError('FAILED_PRECONDITION', `pqc.offload: unknown operation ${String(op)}`);
  }
  if (config.routes['kem.keygen'] !== 'openssl' || config.routes['sig.keygen'] !== 'openssl') {
    throw new KbError(
      'FAILED_PRECONDITION',
      'pqc.routes keygen must be openssl: private keys are stored as seeds',
    );
  }
}

export class PqcRouter {
  readonly #engines: ReadonlyMap<EngineName, PqcEngine>;
  readonly #config: PqcRoutingConfig;

  constructor(engines: readonly PqcEngine[], config: PqcRoutingConfig = DEFAULT_PQC_ROUTING) {
    validatePqcRouting(config);
    this.#engines = new Map(engines.map((e) => [e.name, e]));
    for (const name of config.enabled) {
      if (!this.#engines.has(name))
        throw new KbError('FAILED_PRECONDITION', `pqc engine ${name} is enabled but not provided`);
    }
    this.#config = config;
  }

  get config(): PqcRoutingConfig {
    return this.#config;
  }

  engine(name: EngineName): PqcEngine {
    const e = this.#engines.get(name);
    if (e === undefined) throw new KbError('FAILED_PRECONDITION', `pqc engine ${name} is not enabled`);
    return e;
  }

  /** Whether `op` should run on the worker pool. */
  offloaded(op: PqcOperation): boolean {
    return this.#config.offload.includes(op);
  }

  /** The engine for `op`; with a non-empty context, the configured one only if it supports contexts. */
  engineFor(op: PqcOperation, context?: Uint8Array): PqcEngine {
    const routed = this.engine(this.#config.routes[op]);
    if (
      (op === 'sig.sign' || op === 'sig.verify') &&
      context !== undefined &&
      context.length > 0 &&
      !routed.capabilities.signContext
    ) {
      return this.#firstWith((e) => e.capabilities.signContext, 'ML-DSA context strings');
    }
    return routed;
  }

  /**
   * Load a stored private key (its seed) for `op` on the routed engine. An engine that cannot
   * expand seeds gets the expanded key from one that can; the expanded copy is zeroed after.
   */
  loadPrivateKey(
    op: 'kem.decapsulate' | 'sig.sign',
    alg: PqcAlgorithm,
    seed: Uint8Array,
    publicKey: Uint8Array,
    context?: Uint8Array,
  ): PqcPrivateKey {
    if (isKemAlgorithm(alg) !== (op === 'kem.decapsulate'))
      throw new KbError('INVALID_ARGUMENT', `alg ${alg} does not fit ${op}`);
    const target = this.engineFor(op, context);
    if (target.capabilities.keygenFromSeed) return target.loadPrivateKey(alg, 'seed', seed, publicKey);
    const expander = this.#firstWith((e) => e.capabilities.keygenFromSeed, 'keygen from seed');
    const pair = expander.generateKeyPair(alg, seed);
    try {
      return target.loadPrivateKey(alg, 'expanded', pair.secretKey.expose(), publicKey);
    } finally {
      pair.secretKey.destroy();
      pair.seed?.destroy();
    }
  }

  /** Verify on the routed engine (or a context-capable one when `context` is non-empty). */
  verify(
    alg: SigAlgorithm,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context?: Uint8Array,
  ): boolean {
    return this.engineFor('sig.verify', context).verify(alg, publicKey, message, signature, context);
  }

  #firstWith(pred: (e: PqcEngine) => boolean, what: string): PqcEngine {
    for (const name of this.#config.enabled) {
      const e = this.#engines.get(name);
      if (e !== undefined && pred(e)) return e;
    }
    throw new KbError('FAILED_PRECONDITION', `no enabled pqc engine supports ${what}`);
  }
}
