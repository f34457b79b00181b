/**
 * keybroker.v1.Crypto: a thin layer over KeyBrokerApi. The tenant is always the caller's own,
 * from its certificate; no request field names a tenant. Streams live in crypto-streams.ts.
 *
 * Every call is authorized for its customer before any key is loaded: Encrypt and
 * GenerateDataKey at the gate (the request names it, "default" when empty); batches per item;
 * decrypt-side calls with the customer their parsed header names (a CustomerGuard), refused with
 * the one opaque decrypt error, while the audit record says denied with the rule.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';
import type { CustomerGuard, EncryptResult, ItemResult, KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import type { AuditFacts, CallContext, CallGate, CallTarget, UnarySpec } from './call-gate.ts';
import { ownTenant } from './caller-identity.ts';
import { decryptStream, encryptStream } from './crypto-streams.ts';
import type { FieldLimits } from './request-bounds.ts';
import {
  CIPHERTEXT_OVERHEAD,
  batchItems,
  bytesField,
  dataKeyLength,
  optionalCustomer,
  requiredBytes,
} from './request-bounds.ts';

const RPC = 'keybroker.v1.Crypto/';

function ownTarget(id: CallerIdentity): CallTarget {
  return id.tenant === undefined ? { org: id.org } : { org: id.org, tenant: id.tenant };
}

/** The caller's tenant; the customer is authorized once the handler knows it. */
export function customerPendingTarget(id: CallerIdentity): CallTarget {
  return { ...ownTarget(id), pending: ['customers'] };
}

/** Decrypt-side: the header's customer must be allowed, or the call looks like a bad ciphertext. */
const guardOf =
  (ctx: CallContext): CustomerGuard =>
  (customer) =>
    ctx.authorizeCustomer(customer).allow;

/** The one key version all ok items used, for the audit record (none when they differ). */
function oneVersion(facts: AuditFacts, results: readonly ItemResult<{ keyVersion: number }>[]): void {
  const versions = new Set(results.flatMap((r) => (r.ok ? [r.value.keyVersion] : [])));
  if (versions.size === 1) facts.keyVersion = [...versions][0] as number;
}

interface EncryptMsg {
  customer: string;
  plaintext: Uint8Array;
  aad: Uint8Array;
}
interface DecryptMsg {
  ciphertext: Uint8Array;
  aad: Uint8Array;
}

function itemError(err: KbError) {
  return { error: { code: err.status, reason: err.code, message: err.safeMessage } };
}

/** Build the Crypto service implementation. */
export function cryptoService(
  gate: CallGate,
  broker: () => KeyBrokerApi,
  limits: FieldLimits,
): UntypedServiceImplementation {
  const maxCiphertext = limits.maxPlaintextBytes + CIPHERTEXT_OVERHEAD;
  const encReq = (m: EncryptMsg, at = '') => {
    const customer = optionalCustomer(m.customer);
    return {
      ...(customer !== undefined ? { customer } : {}),
      plaintext: bytesField(`${at}plaintext`, m.plaintext, limits.maxPlaintextBytes),
      aad: bytesField(`${at}aad`, m.aad, limits.maxAadBytes),
    };
  };
  const decReq = (m: DecryptMsg, at = '') => ({
    ciphertext: requiredBytes(`${at}ciphertext`, m.ciphertext, maxCiphertext),
    aad: bytesField(`${at}aad`, m.aad, limits.maxAadBytes),
  });
  const batchBytes = (
    items: readonly { plaintext?: Uint8Array; ciphertext?: Uint8Array; aad: Uint8Array }[],
  ) => {
    let total = 0;
    for (const it of items)
      total += (it.plaintext?.length ?? 0) + (it.ciphertext?.length ?? 0) + it.aad.length;
    if (total > limits.maxBatchBytes)
      throw new KbError('TOO_LARGE', `items exceed ${limits.maxBatchBytes} bytes in total`);
  };
  // customerOf: the customer the request names (default when empty), authorized at the gate;
  // without it the handler authorizes customers as it learns them.
  const unary = <Req, Res>(
    name: string,
    handle: UnarySpec<Req, Res>['handle'],
    customerOf?: (r: Req) => unknown,
  ) =>
    gate.unary<Req, Res>(RPC + name, {
      // A batch costs its item count (bounded by maxBatchItems), anything else 1.
      cost: (req) => {
        const items = (req as { items?: unknown }).items;
        return Array.isArray(items) ? Math.min(Math.max(items.length, 1), limits.maxBatchItems) : 1;
      },
      target: (id, req) =>
        customerOf
          ? { ...ownTarget(id), customer: optionalCustomer(customerOf(req)) ?? DEFAULT_CUSTOMER }
          : customerPendingTarget(id),
      handle,
    });
  const batchResults = <T, R>(results: ItemResult<T>[], map: (v: T) => R, metricsRpc: string) => {
    gate.countItems(metricsRpc, results);
    return results.map((r) => (r.ok ? { result: map(r.value) } : itemError(r.error)));
  };

  return {
    Encrypt: unary<EncryptMsg, object>(
      'Encrypt',
      async (ctx, m, facts) => {
        const r = await broker().encrypt(ownTenant(ctx.identity), encReq(m));
        facts.keyVersion = r.keyVersion;
        return { ciphertext: r.ciphertext, keyVersion: r.keyVersion };
      },
      (m) => m.customer,
    ),
    Decrypt: unary<DecryptMsg, object>('Decrypt', async (ctx, m, facts) => {
      const r = await broker().decrypt(ownTenant(ctx.identity), decReq(m), guardOf(ctx));
      facts.customer = r.customer;
      facts.keyVersion = r.keyVersion;
      return { plaintext: r.plaintext, customer: r.customer, keyVersion: r.keyVersion };
    }),
    EncryptBatch: unary<{ items: EncryptMsg[] }, object>('EncryptBatch', async (ctx, m, facts) => {
      const items = batchItems<EncryptMsg>('items', m.items, limits.maxBatchItems).map((it, i) =>
        encReq(it, `items[${i}].`),
      );
      batchBytes(items);
      // Each item's customer is authorized before any key is loaded; a refused item is
      // PERMISSION_DENIED on its own, the others go ahead.
      const refusals = items.map((it) => {
        const d = ctx.authorizeCustomer(it.customer ?? DEFAULT_CUSTOMER);
        return d.allow ? undefined : new KbError('PERMISSION_DENIED', undefined, { detail: d.reason });
      });
      const allowed = items.filter((_it, i) => refusals[i] === undefined);
      const done = allowed.length > 0 ? await broker().encryptBatch(ownTenant(ctx.identity), allowed) : [];
      let next = 0;
      const results = refusals.map((e): ItemResult<{ ciphertext: Uint8Array; keyVersion: number }> =>
        e !== undefined ? { ok: false, error: e } : (done[next++] as ItemResult<EncryptResult>),
      );
      oneVersion(facts, results);
      return {
        results: batchResults(
          results,
          (v) => ({ ciphertext: v.ciphertext, keyVersion: v.keyVersion }),
          'EncryptBatch',
        ),
      };
    }),
    DecryptBatch: unary<{ items: DecryptMsg[] }, object>('DecryptBatch', async (ctx, m, facts) => {
      const items = batchItems<DecryptMsg>('items', m.items, limits.maxBatchItems).map((it, i) =>
        decReq(it, `items[${i}].`),
      );
      batchBytes(items);
      const results = await broker().decryptBatch(ownTenant(ctx.identity), items, guardOf(ctx));
      oneVersion(facts, results);
      return {
        results: batchResults(
          results,
          (v) => ({ plaintext: v.plaintext, customer: v.customer, keyVersion: v.keyVersion }),
          'DecryptBatch',
        ),
      };
    }),
    GenerateDataKey: unary<{ customer: string; aad: Uint8Array; length: number }, object>(
      'GenerateDataKey',
      async (ctx, m, facts) => {
        const customer = optionalCustomer(m.customer);
        const r = await broker().generateDataKey(ownTenant(ctx.identity), {
          ...(customer !== undefined ? { customer } : {}),
          aad: bytesField('aad', m.aad, limits.maxAadBytes),
          length: dataKeyLength(m.length),
        });
        facts.keyVersion = r.keyVersion;
        return { plaintextKey: r.plaintextKey, wrappedKey: r.wrappedKey, keyVersion: r.keyVersion };
      },
      (m) => m.customer,
    ),
    DecryptDataKey: unary<{ wrappedKey: Uint8Array; aad: Uint8Array }, object>(
      'DecryptDataKey',
      async (ctx, m, facts) => {
        const r = await broker().decryptDataKey(
          ownTenant(ctx.identity),
          {
            wrappedKey: requiredBytes('wrapped_key', m.wrappedKey, limits.maxWrappedKeyBytes),
            aad: bytesField('aad', m.aad, limits.maxAadBytes),
          },
          guardOf(ctx),
        );
        if (r.customer !== undefined) facts.customer = r.customer;
        if (r.keyVersion !== undefined) facts.keyVersion = r.keyVersion;
        return { plaintextKey: r.plaintextKey };
      },
    ),
    Rewrap: unary<DecryptMsg, object>('Rewrap', async (ctx, m, facts) => {
      const r = await broker().rewrap(ownTenant(ctx.identity), decReq(m), guardOf(ctx));
      if (r.customer !== undefined) facts.customer = r.customer;
      facts.keyVersion = r.keyVersion;
      return { ciphertext: r.ciphertext, keyVersion: r.keyVersion };
    }),
    EncryptStream: gate.stream(RPC + 'EncryptStream', {
      target: customerPendingTarget,
      handle: (ctx, call, facts) => encryptStream(ctx, call, broker, limits, facts, gate),
    }),
    DecryptStream: gate.stream(RPC + 'DecryptStream', {
      target: customerPendingTarget,
      handle: (ctx, call, facts) => decryptStream(ctx, call, broker, limits, facts, gate),
    }),
  };
}
