/**
 * keybroker.v1.BlindIndexes: a thin layer over BlindIndexes (KeyBroker.blindIndexes). The tenant
 * is always the caller's own, from its certificate. Index name and customer go to the authoriser
 * (policy `keys` and `customers` globs); a batch is of one index and one customer, so it is
 * authorised exactly like a single call. Audit records name the index and the primary version,
 * never a value or a token.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import type { BlindIndexQuery } from '../keys/blind-indexes.ts';
import { blindIndexName, MAX_INDEX_VALUE_BYTES } from '../keys/blind-indexes.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import type { CallGate, CallTarget } from './call-gate.ts';
import { ownTenant } from './caller-identity.ts';
import { blindIndexesOf } from './blind-index-messages.ts';
import { itemErrorMessage } from './keys-messages.ts';
import type { FieldLimits } from './request-bounds.ts';
import { batchItems, optionalCustomer, requiredBytes } from './request-bounds.ts';

const RPC = 'keybroker.v1.BlindIndexes/';

interface ComputeMsg {
  index: string;
  value: Uint8Array;
  customer: string;
  allSearchableVersions: boolean;
}
interface BatchMsg {
  index: string;
  values: Uint8Array[];
  customer: string;
  allSearchableVersions: boolean;
}

/** The caller's tenant with the index (as key name) and customer a request names. */
function target(
  id: CallerIdentity,
  m: { index: unknown; customer: unknown },
): CallTarget & { keyName?: string } {
  if (id.tenant === undefined) return { org: id.org };
  const customer = optionalCustomer(m.customer);
  return {
    org: id.org,
    tenant: id.tenant,
    keyName: blindIndexName(m.index),
    ...(customer !== undefined ? { customer } : {}),
  };
}

/** A request's query for `value`; every field bounded, the value never echoed. */
function query(
  m: { index: unknown; customer: unknown; allSearchableVersions: unknown },
  value: unknown,
  field: string,
): BlindIndexQuery {
  const customer = optionalCustomer(m.customer);
  return {
    index: blindIndexName(m.index),
    value: requiredBytes(field, value, MAX_INDEX_VALUE_BYTES),
    allSearchable: m.allSearchableVersions === true,
    ...(customer !== undefined ? { customer } : {}),
  };
}

const tokensMessage = (tokens: readonly { version: number; token: Uint8Array }[]) => ({
  tokens: tokens.map((t) => ({ version: t.version, token: t.token })),
});

/** Build the BlindIndexes service implementation. */
export function blindIndexService(
  gate: CallGate,
  broker: () => KeyBrokerApi,
  limits: FieldLimits,
): UntypedServiceImplementation {
  return {
    ComputeBlindIndex: gate.unary<ComputeMsg, object>(RPC + 'ComputeBlindIndex', {
      target,
      handle: async (ctx, m, facts) => {
        const q = query(m, m.value, 'value');
        facts.keyName = q.index;
        const tokens = await blindIndexesOf(broker()).compute(ownTenant(ctx.identity), q);
        if (tokens[0] !== undefined) facts.keyVersion = tokens[0].version;
        return tokensMessage(tokens);
      },
    }),
    ComputeBlindIndexBatch: gate.unary<BatchMsg, object>(RPC + 'ComputeBlindIndexBatch', {
      target,
      cost: (m) =>
        Array.isArray(m.values) ? Math.min(Math.max(m.values.length, 1), limits.maxBatchItems) : 1,
      handle: async (ctx, m, facts) => {
        const values = batchItems<unknown>('values', m.values, limits.maxBatchItems);
        const first = query(m, values[0], 'values[0]');
        let total = 0;
        const items = values.map((v, i) => {
          const q =
            i === 0 ? first : { ...first, value: requiredBytes(`values[${i}]`, v, MAX_INDEX_VALUE_BYTES) };
          total += q.value.length;
          return q;
        });
        if (total > limits.maxBatchBytes)
          throw new KbError('TOO_LARGE', `values exceed ${limits.maxBatchBytes} bytes in total`);
        facts.keyName = blindIndexName(m.index);
        const results = await blindIndexesOf(broker()).computeBatch(ownTenant(ctx.identity), items);
        gate.countItems('ComputeBlindIndexBatch', results);
        const ok = results.find((r) => r.ok);
        const primary = ok?.ok ? ok.value[0] : undefined;
        if (primary !== undefined) facts.keyVersion = primary.version;
        return {
          results: results.map((r) =>
            r.ok ? { result: tokensMessage(r.value) } : { error: itemErrorMessage(r.error) },
          ),
        };
      },
    }),
  };
}
