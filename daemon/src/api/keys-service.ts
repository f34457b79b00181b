/**
 * keybroker.v1.Keys: a thin layer over AsymmetricKeyApi (KeyBroker.asymmetric). The tenant is
 * always the caller's own, from its certificate; every field is bounded here, before any work.
 * The algorithm (and key name) go to the authoriser with the target, so FIPS mode and per-key
 * policy rules apply through the same call gate as every other service. Every audit record of a
 * Keys call names its key (keyName) and, when one was used, its version. A request may name a
 * customer (customer-level keys); the tenant is still only the caller's own.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import type { AsymmetricKeyApi, KeyOwner, VerifyItem } from '../keys/asymmetric-key-api.ts';
import type { AsymmetricKeyType } from '../keys/asymmetric-key-store.ts';
import { DEFAULT_ASYMMETRIC_KEY_LIMITS } from '../keys/asymmetric-key-limits.ts';
import { asymmetricKeyId } from '../keys/asymmetric-keys.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import { importJobId, MAX_IMPORT_BLOB_BYTES } from '../keys/key-import.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import { publicKeyToJwk, publicKeyToPem, publicKeyToSpki } from '../pqc/public-key-export.ts';
import type { CallGate, CallTarget, UnarySpec } from './call-gate.ts';
import { ownTenant } from './caller-identity.ts';
import {
  asymmetricKeyMessage,
  importWrappingEnum,
  importWrappingField,
  itemErrorMessage,
  keyAlgorithmEnum,
  keyAlgorithmField,
  policyAlgorithm,
} from './keys-messages.ts';
import type { FieldLimits } from './request-bounds.ts';
import {
  batchCount,
  batchItems,
  bytesField,
  optionalCustomer,
  policyUpdate,
  versionField,
} from './request-bounds.ts';

const RPC = 'keybroker.v1.Keys/';
/** The key lifecycle RPCs: they change state (`mutating`: intent record first, never abandoned). */
const LIFECYCLE: ReadonlySet<string> = new Set([
  'CreateKey',
  'SetAsymmetricKeyPolicy',
  'RotateKey',
  'SetAsymmetricKeyVersionEnabled',
  'CreateImportJob',
  'ImportKey',
]);
/** Bounds of the fields only this service has. */
export const KEYS_BOUNDS = {
  context: 255,
  info: 1024,
  signature: 8192,
  /**
   * Field bound for KEM ciphertexts, above the largest (ML-KEM-1024, 1568 B) so that any wrong
   * length up to it is the one opaque decryption error; longer is refused before any work.
   */
  kemCiphertext: 2048,
  /** enc (at most 1120) + tag, on top of the plaintext bound. */
  boxOverhead: 2048,
  /** An expected public key of an import (X-Wing 1216 B, ML-DSA-87 2592 B). */
  importPublicKey: 4096,
  /** Pool batches carry at most 1024 items. */
  batchItems: 1024,
} as const;

/** The authoriser sees the algorithm and key name too (policy-engine.ts, FIPS mode). */
type KeysTarget = CallTarget & { readonly algorithm?: string; readonly keyName?: string };

interface KeyMsg {
  keyId: string;
  algorithm?: string;
  /** Customer-level keys: the customer (empty: tenant-level). */
  customer?: string;
}

/** Keys RPCs that list keys rather than name one. */
const KEY_LISTS: ReadonlySet<string> = new Set(['ListKeys', 'GetJwks']);

const optionalVersion = (v: unknown): number | undefined =>
  v === 0 || v === undefined ? undefined : versionField(v);

/** Build the Keys service implementation. */
export function keysService(
  gate: CallGate,
  broker: () => KeyBrokerApi,
  limits: FieldLimits,
): UntypedServiceImplementation {
  const asym = (): AsymmetricKeyApi => {
    const a = (broker() as KeyBrokerApi & { asymmetric?: AsymmetricKeyApi }).asymmetric;
    if (a === undefined) throw new KbError('UNIMPLEMENTED', 'asymmetric keys are not enabled');
    return a;
  };
  const maxBatch = Math.min(limits.maxBatchItems, KEYS_BOUNDS.batchItems);
  const ctxField = (v: unknown) => bytesField('context', v, KEYS_BOUNDS.context);
  const msgField = (name: string, v: unknown) => bytesField(name, v, limits.maxPlaintextBytes);
  const totalBytes = (sizes: number[]) => {
    if (sizes.reduce((a, b) => a + b, 0) > limits.maxBatchBytes)
      throw new KbError('TOO_LARGE', `items exceed ${limits.maxBatchBytes} bytes in total`);
  };
  const target = (id: CallerIdentity, m: KeyMsg): KeysTarget => {
    if (id.tenant === undefined) return { org: id.org };
    const customer = optionalCustomer(m.customer);
    const own = { org: id.org, tenant: id.tenant, ...(customer !== undefined ? { customer } : {}) };
    const keyName = typeof m.keyId === 'string' && m.keyId !== '' ? asymmetricKeyId(m.keyId) : undefined;
    let alg: AsymmetricKeyType | undefined;
    if (m.algorithm !== undefined) alg = keyAlgorithmField(m.algorithm);
    else if (keyName !== undefined) alg = asym().algorithmOf(own, keyName);
    return {
      ...own,
      ...(keyName !== undefined ? { keyName } : {}),
      ...(alg !== undefined ? { algorithm: policyAlgorithm(alg) } : {}),
    };
  };
  /** ImportKey names a job, not a key: the authoriser sees the key and algorithm the job imports. */
  const importTarget = (id: CallerIdentity, m: KeyMsg & { jobId?: unknown }): KeysTarget => {
    const t = target(id, { customer: m.customer, keyId: '' } as KeyMsg);
    if (id.tenant === undefined) return t;
    const customer = optionalCustomer(m.customer);
    const own = { org: id.org, tenant: id.tenant, ...(customer !== undefined ? { customer } : {}) };
    const job = asym().importJobTarget(own, m.jobId);
    return job === undefined ? t : { ...t, keyName: job.keyId, algorithm: policyAlgorithm(job.type) };
  };
  const unary = <Req extends KeyMsg>(
    name: string,
    handle: UnarySpec<Req, object>['handle'],
    cost?: (r: Req) => number,
  ) =>
    gate.unary<Req, object>(RPC + name, {
      // ListKeys and GetJwks name no key: each listed key is authorized by name (and filtered).
      target: (id, req) =>
        KEY_LISTS.has(name)
          ? { ...target(id, req), pending: ['keys'] }
          : name === 'ImportKey'
            ? importTarget(id, req as KeyMsg & { jobId?: unknown })
            : target(id, req),
      mutating: LIFECYCLE.has(name),
      ...(cost !== undefined ? { cost } : {}),
      // Every record names the key (validated by target() before the handler runs).
      handle: (ctx, req, facts) => {
        if (typeof req.keyId === 'string' && req.keyId !== '') facts.keyName = req.keyId;
        return handle(ctx, req, facts);
      },
    });
  /** The caller's own tenant (never a field) and the customer the request names, if any. */
  const me = (id: CallerIdentity, m?: KeyMsg): KeyOwner => {
    const customer = optionalCustomer(m?.customer);
    return { ...ownTenant(id), ...(customer !== undefined ? { customer } : {}) };
  };
  const keyMsg = (k: Parameters<typeof asymmetricKeyMessage>[0]) => ({ key: asymmetricKeyMessage(k) });
  const itemsCost = (r: {
    messages?: unknown[];
    items?: unknown[];
    ciphertexts?: unknown[];
    count?: unknown;
  }) => {
    const n = typeof r.count === 'number' ? r.count : (r.messages ?? r.items ?? r.ciphertexts ?? []).length;
    return Math.min(Math.max(Number.isInteger(n) ? n : 1, 1), maxBatch);
  };
  // Without a version, each item may be tried against several versions: charged for each.
  const candidates = limits.maxVerifyVersions ?? DEFAULT_ASYMMETRIC_KEY_LIMITS.maxVerifyVersions;
  const triesCost = (r: { version?: unknown; items?: unknown[] }) =>
    itemsCost(r) * (r.version === 0 || r.version === undefined ? candidates : 1);

  return {
    CreateKey: unary<KeyMsg & { hsmEcdsa: boolean; algorithm: string; policy?: unknown }>(
      'CreateKey',
      async (ctx, m, facts) => {
        const k = await asym().createKey(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          keyAlgorithmField(m.algorithm),
          { hsmEcdsa: m.hsmEcdsa === true, policy: policyUpdate(m.policy) },
        );
        facts.keyVersion = k.primaryVersion;
        return keyMsg(k);
      },
    ),
    ListKeys: unary<KeyMsg>('ListKeys', async (ctx, m) => ({
      keys: (await asym().listKeys(me(ctx.identity, m)))
        .filter((k) => ctx.mayUseKey(k.keyId, policyAlgorithm(k.type)))
        .map(asymmetricKeyMessage),
    })),
    DescribeKey: unary<KeyMsg>('DescribeKey', async (ctx, m, facts) => {
      const k = await asym().describeKey(me(ctx.identity, m), asymmetricKeyId(m.keyId));
      facts.keyVersion = k.primaryVersion;
      return keyMsg(k);
    }),
    SetAsymmetricKeyPolicy: unary<KeyMsg & { policy?: unknown }>(
      'SetAsymmetricKeyPolicy',
      async (ctx, m, facts) => {
        const k = await asym().setKeyPolicy(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          policyUpdate(m.policy),
        );
        facts.keyVersion = k.primaryVersion;
        return keyMsg(k);
      },
    ),
    RotateKey: unary<KeyMsg>('RotateKey', async (ctx, m, facts) => {
      const k = await asym().rotateKey(me(ctx.identity, m), asymmetricKeyId(m.keyId));
      facts.keyVersion = k.primaryVersion;
      return keyMsg(k);
    }),
    SetAsymmetricKeyVersionEnabled: unary<KeyMsg & { version: number; enabled: boolean }>(
      'SetAsymmetricKeyVersionEnabled',
      async (ctx, m, facts) => {
        const v = versionField(m.version);
        facts.keyVersion = v;
        return keyMsg(
          await asym().setKeyVersionEnabled(
            me(ctx.identity, m),
            asymmetricKeyId(m.keyId),
            v,
            m.enabled === true,
          ),
        );
      },
    ),
    GetPublicKey: unary<KeyMsg & { version: number; format: string }>(
      'GetPublicKey',
      async (ctx, m, facts) => {
        const r = await asym().publicKey(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
        );
        const enc = new TextEncoder();
        let out: Uint8Array;
        switch (m.format) {
          case 'PUBLIC_KEY_FORMAT_SPKI_DER':
            out = publicKeyToSpki(r.type, r.publicKey);
            break;
          case 'PUBLIC_KEY_FORMAT_SPKI_PEM':
            out = enc.encode(publicKeyToPem(r.type, r.publicKey));
            break;
          case 'PUBLIC_KEY_FORMAT_JWK':
            out = enc.encode(
              JSON.stringify({ ...publicKeyToJwk(r.type, r.publicKey), kid: `${m.keyId}.${r.version}` }),
            );
            break;
          case 'PUBLIC_KEY_FORMAT_RAW':
          case 'PUBLIC_KEY_FORMAT_UNSPECIFIED':
          case undefined:
            out = r.publicKey;
            break;
          default:
            throw new KbError('INVALID_ARGUMENT', 'format must be a PublicKeyFormat');
        }
        facts.keyVersion = r.version;
        return { algorithm: keyAlgorithmEnum(r.type), version: r.version, publicKey: out };
      },
    ),
    GetJwks: unary<KeyMsg>('GetJwks', async (ctx, m) => {
      const owner = me(ctx.identity, m);
      const jwks = await asym().jwks(owner);
      // kid = "<key id>.<version>": only keys the caller may use by name are published to it.
      const visible = (kid: string | undefined) => {
        const keyName = kid?.slice(0, Math.max(kid.lastIndexOf('.'), 0)) ?? '';
        const alg = asym().algorithmOf(owner, keyName);
        return keyName !== '' && ctx.mayUseKey(keyName, alg === undefined ? undefined : policyAlgorithm(alg));
      };
      return { jwksJson: JSON.stringify({ ...jwks, keys: jwks.keys.filter((k) => visible(k.kid)) }) };
    }),
    Sign: unary<KeyMsg & { message: Uint8Array; context: Uint8Array }>('Sign', async (ctx, m, facts) => {
      const r = await asym().sign(
        me(ctx.identity, m),
        asymmetricKeyId(m.keyId),
        msgField('message', m.message),
        ctxField(m.context),
      );
      facts.keyVersion = r.version;
      return { signature: r.signature, keyVersion: r.version };
    }),
    Verify: unary<
      KeyMsg & { version: number; message: Uint8Array; signature: Uint8Array; context: Uint8Array }
    >(
      'Verify',
      async (ctx, m, facts) => {
        const r = await asym().verify(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
          {
            message: msgField('message', m.message),
            signature: bytesField('signature', m.signature, KEYS_BOUNDS.signature),
          },
          ctxField(m.context),
        );
        if (r.valid) facts.keyVersion = r.version;
        return { valid: r.valid, keyVersion: r.version };
      },
      triesCost,
    ),
    SignBatch: unary<KeyMsg & { messages: Uint8Array[]; context: Uint8Array }>(
      'SignBatch',
      async (ctx, m, facts) => {
        const msgs = batchItems<Uint8Array>('messages', m.messages, maxBatch).map((x, i) =>
          msgField(`messages[${i}]`, x),
        );
        totalBytes(msgs.map((x) => x.length));
        const r = await asym().signBatch(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          msgs,
          ctxField(m.context),
        );
        facts.keyVersion = r.version;
        gate.countItems('SignBatch', r.results);
        return {
          keyVersion: r.version,
          results: r.results.map((x) =>
            x.ok ? { signature: x.value } : { error: itemErrorMessage(x.error) },
          ),
        };
      },
      itemsCost,
    ),
    VerifyBatch: unary<
      KeyMsg & {
        version: number;
        items: { message: Uint8Array; signature: Uint8Array }[];
        context: Uint8Array;
      }
    >(
      'VerifyBatch',
      async (ctx, m, facts) => {
        const items: VerifyItem[] = batchItems<{ message: Uint8Array; signature: Uint8Array }>(
          'items',
          m.items,
          maxBatch,
        ).map((it, i) => ({
          message: msgField(`items[${i}].message`, it.message),
          signature: bytesField(`items[${i}].signature`, it.signature, KEYS_BOUNDS.signature),
        }));
        totalBytes(items.map((x) => x.message.length + x.signature.length));
        const r = await asym().verifyBatch(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
          items,
          ctxField(m.context),
        );
        // The version asked for, else the one every valid item verified under (if it is one).
        const versions = new Set(r.flatMap((x) => (x.ok && x.value.valid ? [x.value.version] : [])));
        const v = optionalVersion(m.version) ?? (versions.size === 1 ? [...versions][0] : undefined);
        if (v !== undefined) facts.keyVersion = v;
        gate.countItems('VerifyBatch', r);
        return {
          results: r.map((x) =>
            x.ok
              ? { valid: x.value.valid, keyVersion: x.value.version }
              : { valid: false, keyVersion: 0, error: itemErrorMessage(x.error) },
          ),
        };
      },
      triesCost,
    ),
    Encapsulate: unary<KeyMsg>('Encapsulate', async (ctx, m, facts) => {
      const r = await asym().encapsulate(me(ctx.identity, m), asymmetricKeyId(m.keyId));
      facts.keyVersion = r.version;
      return { ciphertext: r.cipherText, sharedSecret: r.sharedSecret, keyVersion: r.version };
    }),
    EncapsulateBatch: unary<KeyMsg & { count: number }>(
      'EncapsulateBatch',
      async (ctx, m, facts) => {
        const count = batchCount('count', m.count, maxBatch);
        const r = await asym().encapsulateBatch(me(ctx.identity, m), asymmetricKeyId(m.keyId), count);
        facts.keyVersion = r.version;
        gate.countItems('EncapsulateBatch', r.encapsulations.length);
        return {
          keyVersion: r.version,
          results: r.encapsulations.map((e) => ({ ciphertext: e.cipherText, sharedSecret: e.sharedSecret })),
        };
      },
      itemsCost,
    ),
    Decapsulate: unary<KeyMsg & { version: number; ciphertext: Uint8Array }>(
      'Decapsulate',
      async (ctx, m, facts) => {
        const r = await asym().decapsulate(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
          bytesField('ciphertext', m.ciphertext, KEYS_BOUNDS.kemCiphertext),
        );
        facts.keyVersion = r.version;
        return { sharedSecret: r.sharedSecret, keyVersion: r.version };
      },
    ),
    DecapsulateBatch: unary<KeyMsg & { version: number; ciphertexts: Uint8Array[] }>(
      'DecapsulateBatch',
      async (ctx, m, facts) => {
        const cts = batchItems<Uint8Array>('ciphertexts', m.ciphertexts, maxBatch).map((x, i) =>
          bytesField(`ciphertexts[${i}]`, x, KEYS_BOUNDS.kemCiphertext),
        );
        const r = await asym().decapsulateBatch(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
          cts,
        );
        facts.keyVersion = r.version;
        gate.countItems('DecapsulateBatch', r.results);
        return {
          keyVersion: r.version,
          results: r.results.map((x) =>
            x.ok ? { sharedSecret: x.value } : { error: itemErrorMessage(x.error) },
          ),
        };
      },
      itemsCost,
    ),
    SealBox: unary<KeyMsg & { plaintext: Uint8Array; info: Uint8Array; aad: Uint8Array }>(
      'SealBox',
      async (ctx, m, facts) => {
        const r = await asym().sealBox(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          msgField('plaintext', m.plaintext),
          bytesField('info', m.info, KEYS_BOUNDS.info),
          bytesField('aad', m.aad, limits.maxAadBytes),
        );
        facts.keyVersion = r.version;
        return { sealed: r.sealed, keyVersion: r.version };
      },
    ),
    OpenBox: unary<KeyMsg & { version: number; sealed: Uint8Array; info: Uint8Array; aad: Uint8Array }>(
      'OpenBox',
      async (ctx, m, facts) => {
        const r = await asym().openBox(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          optionalVersion(m.version),
          bytesField('sealed', m.sealed, limits.maxPlaintextBytes + KEYS_BOUNDS.boxOverhead),
          bytesField('info', m.info, KEYS_BOUNDS.info),
          bytesField('aad', m.aad, limits.maxAadBytes),
        );
        facts.keyVersion = r.version;
        return { plaintext: r.plaintext, keyVersion: r.version };
      },
      triesCost,
    ),
    CreateImportJob: unary<KeyMsg & { algorithm: string; wrapping?: string; ttlSeconds?: number }>(
      'CreateImportJob',
      async (ctx, m) => {
        const j = await asym().createImportJob(
          me(ctx.identity, m),
          asymmetricKeyId(m.keyId),
          keyAlgorithmField(m.algorithm),
          importWrappingField(m.wrapping),
          m.ttlSeconds === undefined || m.ttlSeconds === 0 ? undefined : m.ttlSeconds,
        );
        return {
          jobId: j.jobId,
          publicKey: j.publicKey,
          wrapping: importWrappingEnum(j.wrapping),
          expireTime: j.expiresAt,
          kdfInfo: j.kdfInfo,
        };
      },
    ),
    ImportKey: unary<KeyMsg & { jobId?: unknown; wrappedKey?: unknown; publicKey?: unknown }>(
      'ImportKey',
      async (ctx, m, facts) => {
        const publicKey = bytesField(
          'public_key',
          m.publicKey ?? new Uint8Array(0),
          KEYS_BOUNDS.importPublicKey,
        );
        const k = await asym().importKey(
          me(ctx.identity, m),
          importJobId(m.jobId),
          bytesField('wrapped_key', m.wrappedKey, MAX_IMPORT_BLOB_BYTES),
          publicKey.length > 0 ? publicKey : undefined,
        );
        facts.keyName = k.keyId;
        facts.keyVersion = k.primaryVersion;
        return keyMsg(k);
      },
    ),
  };
}
