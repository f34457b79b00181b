/**
 * The Admin service as the bench uses it: provisioning tenants and customers before a window,
 * and the admin operations that are themselves scenarios (create, destroy, rotate). Calls go
 * over the admin identity `keybroker init` issued, with the same grpc-js client as the load.
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProto, serviceConstructor } from '../lib/grpc-proto.ts';
import { unary } from '../load/grpc-calls.ts';

export class AdminClient {
  readonly #client: grpc.Client;
  readonly #timeoutMs: number;

  constructor(
    port: number,
    tls: { caCert: string; cert: string; key: string },
    protoDir: string,
    timeoutMs = 600_000,
  ) {
    const root = loadProto([join(protoDir, 'keybroker/v1/admin.proto')], [protoDir]);
    const ctor = serviceConstructor(root, 'keybroker.v1.Admin');
    const creds = grpc.credentials.createSsl(
      readFileSync(tls.caCert),
      readFileSync(tls.key),
      readFileSync(tls.cert),
    );
    this.#client = new ctor(`127.0.0.1:${port}`, creds, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.ssl_target_name_override': 'localhost',
    });
    this.#timeoutMs = timeoutMs;
  }

  async createTenant(org: string, tenant: string): Promise<void> {
    await unary(this.#client, 'createTenant', { org, tenant }, this.#timeoutMs);
  }

  /** Admin.CreateTenants (one durable batch); returns how many it created, throws on any per-name error. */
  async createTenants(org: string, tenants: readonly string[]): Promise<number> {
    const r = await unary<{ created?: number; results?: { name?: string; error?: { reason?: string } }[] }>(
      this.#client,
      'createTenants',
      { org, tenants },
      this.#timeoutMs,
    );
    const failed = (r.results ?? []).find((x) => x.error !== undefined);
    if (failed) throw new Error(`CreateTenants: ${failed.name ?? '?'}: ${failed.error?.reason ?? 'error'}`);
    return r.created ?? 0;
  }

  async createCustomer(org: string, tenant: string, customer: string): Promise<void> {
    await unary(this.#client, 'createCustomer', { org, tenant, customer }, this.#timeoutMs);
  }

  /** Admin.CreateBlindIndex (NFKC, lowercase, trim; `outputBytes` per token). */
  async createBlindIndex(org: string, tenant: string, index: string, outputBytes: 16 | 32): Promise<void> {
    const normalization = ['NFKC', 'LOWERCASE', 'TRIM'].map((s) => `BLIND_INDEX_NORMALIZATION_${s}`);
    await unary(
      this.#client,
      'createBlindIndex',
      { org, tenant, index, normalization, outputBytes },
      this.#timeoutMs,
    );
  }

  async destroyTenant(org: string, tenant: string): Promise<void> {
    await unary(this.#client, 'destroyTenant', { org, tenant }, this.#timeoutMs);
  }

  async rotateOrgKey(org: string): Promise<void> {
    await unary(this.#client, 'rotateOrgKey', { org }, this.#timeoutMs);
  }

  async rotateTenantKey(org: string, tenant: string): Promise<void> {
    await unary(this.#client, 'rotateTenantKey', { org, tenant }, this.#timeoutMs);
  }

  close(): void {
    this.#client.close();
  }
}

/**
 * Run `fn` over 0..count-1 with `concurrency` in flight, stopping early at `deadline` (ms since
 * epoch). Returns how many completed; the first error stops the run and is rethrown.
 */
export async function forEachBounded(
  count: number,
  concurrency: number,
  deadline: number,
  fn: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  let done = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count && Date.now() < deadline) {
      const i = next++;
      try {
        await fn(i);
        done++;
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failure !== undefined) throw failure;
  return done;
}

/** Sum of every sample of `metric` in Prometheus text whose labels contain `labelPart`. */
export function sumMetric(text: string, metric: string, labelPart = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const rest = line.slice(metric.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labelPart !== '' && !rest.includes(labelPart)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}
