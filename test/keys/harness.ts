/**
 * Shared setup for the hierarchy's integration tests: a fresh SoftHSM2 token per test process
 * opened through Pkcs11Hsm, and KeyBrokers over temporary data dirs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import type { Hsm } from '../../daemon/src/hsm/hsm.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import type { CustomerId, OrgId, TenantId, TenantRef } from '../../daemon/src/ids.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { KeyBrokerOptions } from '../../daemon/src/keys/key-broker-options.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter, type PqcRoutingConfig } from '../../daemon/src/pqc/pqc-router.ts';
import { PqcWorkerPool } from '../../daemon/src/pqc/pqc-worker-pool.ts';
import { createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';

export const org = (s: string): OrgId => s as OrgId;
export const cust = (s: string): CustomerId => s as CustomerId;
export const ref = (o: string, t: string): TenantRef => ({ org: o as OrgId, tenant: t as TenantId });
export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export interface SoftHsmEnv {
  readonly hsm: Hsm;
  readonly token: TestToken;
  /** A new, empty data dir (removed by close). */
  dataDir(): string;
  close(): Promise<void>;
}

/** One SoftHSM2 token (real PKCS#11) for this test process. */
export async function openSoftHsm(label = 'kb-keys'): Promise<SoftHsmEnv> {
  const token = createTestToken(label);
  const hsm = await Pkcs11Hsm.open({
    profile: loadProfile('softhsm2'),
    pin: token.pin,
    tokenLabel: token.label,
    probeIntervalMs: 0,
  });
  const dirs: string[] = [];
  return {
    hsm,
    token,
    dataDir: () => {
      const d = mkdtempSync(join(tmpdir(), 'kb-data-'));
      dirs.push(d);
      return d;
    },
    close: async () => {
      await hsm.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      token.cleanup();
    },
  };
}

export function openBroker(hsm: Hsm, dataDir: string, o: Partial<KeyBrokerOptions> = {}): Promise<KeyBroker> {
  return KeyBroker.open({ shredBatchMs: 5, ...o, hsm, dataDir });
}

/**
 * The paths a Keys batch can take, by worker-pool size: inline with no pool, inline in event-loop
 * slices with one worker (one usable core: the hop would cost about as much as the work), and
 * split over two workers.
 */
export const BATCH_PATHS: readonly (readonly [name: string, workers: number])[] = [
  ['no worker pool (inline)', 0],
  ['one-worker pool (inline, sliced)', 1],
  ['two-worker pool (split)', 2],
];

/** A broker with asymmetric keys on both engines and `workers` pool workers (none for 0). */
export async function openPqcBroker(
  env: SoftHsmEnv,
  workers: number,
  routing: PqcRoutingConfig = DEFAULT_PQC_ROUTING,
): Promise<{ kb: KeyBroker; close: () => Promise<void> }> {
  const router = new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], routing);
  const pool = workers === 0 ? undefined : await PqcWorkerPool.create({ size: workers });
  const kb = await openBroker(env.hsm, env.dataDir(), {
    pqc: { runtime: new AsymmetricRuntime(router, pool) },
  });
  return {
    kb,
    close: async () => {
      await kb.close();
      await pool?.close();
    },
  };
}

/** Run `fn` and return the KbError code it threw (or 'no error'). */
export async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'no error';
  } catch (err) {
    return (err as { code?: string }).code ?? `non-KbError: ${String(err)}`;
  }
}
