/**
 * keybroker.v1.Secrets: a thin layer over SecretStore (KeyBroker.secrets). The tenant is always
 * the caller's own, from its certificate. The secret name goes to the authoriser as the key name
 * (policy `keys` globs, e.g. allow "payments/*" only) with the customer; audit records name the
 * secret and version. Values are bounded here and never logged, echoed or audited.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import type { CustomerId } from '../ids.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { SecretInfo, SecretStore } from '../keys/secret-store.ts';
import { MAX_SECRET_VALUE_BYTES, MAX_VERSIONS_PER_CALL, secretName } from '../keys/secret-store.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import type { CallGate, CallTarget, UnarySpec } from './call-gate.ts';
import { ownTenant } from './caller-identity.ts';
import { bytesField, optionalCustomer } from './request-bounds.ts';

const RPC = 'keybroker.v1.Secrets/';

type Msg = Record<string, unknown>;

const STATES = {
  active: 'SECRET_VERSION_STATE_ACTIVE',
  deleted: 'SECRET_VERSION_STATE_DELETED',
  destroyed: 'SECRET_VERSION_STATE_DESTROYED',
} as const;

function secretsOf(api: KeyBrokerApi): SecretStore {
  const s = (api as KeyBrokerApi & { secrets?: SecretStore }).secrets;
  if (s === undefined) throw new KbError('UNIMPLEMENTED', 'secrets are not enabled');
  return s;
}

function metadataMessage(s: SecretInfo): object {
  return {
    name: s.name,
    customer: s.customer,
    currentVersion: s.currentVersion,
    maxVersions: s.maxVersions,
    createTime: s.createdAt,
    updateTime: s.updatedAt,
    versions: s.versions.map((v) => ({
      version: v.version,
      state: STATES[v.state],
      createTime: v.createdAt,
    })),
  };
}

/** A uint32 field that must be a whole number (proto3 gives 0 when absent). */
function u32(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff)
    throw new KbError('INVALID_ARGUMENT', `${name} must be an unsigned 32-bit integer`);
  return v;
}

/** `versions`: at most MAX_VERSIONS_PER_CALL entries, each >= 1. */
function versionsField(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new KbError('INVALID_ARGUMENT', 'versions must be a list');
  if (v.length > MAX_VERSIONS_PER_CALL)
    throw new KbError('TOO_LARGE', `versions exceeds ${MAX_VERSIONS_PER_CALL} items`);
  return v.map((x) => {
    const n = u32('versions', x);
    if (n < 1) throw new KbError('INVALID_ARGUMENT', 'versions must be >= 1');
    return n;
  });
}

/** Build the Secrets service implementation. */
export function secretsService(gate: CallGate, broker: () => KeyBrokerApi): UntypedServiceImplementation {
  const target = (id: CallerIdentity, m: Msg, named: boolean): CallTarget & { keyName?: string } => {
    if (id.tenant === undefined) return { org: id.org };
    const customer = optionalCustomer(m.customer);
    return {
      org: id.org,
      tenant: id.tenant,
      ...(customer !== undefined ? { customer } : {}),
      ...(named ? { keyName: secretName(m.name) } : {}),
    };
  };
  const unary = (name: string, named: boolean, handle: UnarySpec<Msg, object>['handle']) =>
    gate.unary<Msg, object>(RPC + name, {
      target: (id, m) => target(id, m, named),
      handle: (ctx, m, facts) => {
        // Validated by target() before authorisation; the record names the secret, never its value.
        if (named) facts.keyName = m.name as string;
        return handle(ctx, m, facts);
      },
    });
  const who = (m: Msg) => {
    const customer = optionalCustomer(m.customer);
    return {
      name: m.name as string,
      ...(customer !== undefined ? { customer: customer as CustomerId } : {}),
    };
  };
  const store = () => secretsOf(broker());

  return {
    PutSecret: unary('PutSecret', true, async (ctx, m, facts) => {
      const value = bytesField('value', m.value, MAX_SECRET_VALUE_BYTES);
      const maxVersions = u32('max_versions', m.maxVersions);
      // proto3 `optional`: present when the synthetic oneof `_cas` names it.
      const cas = m._cas === 'cas' ? u32('cas', m.cas) : undefined;
      const r = await store().put(ownTenant(ctx.identity), {
        ...who(m),
        value,
        ...(cas !== undefined ? { cas } : {}),
        ...(maxVersions !== 0 ? { maxVersions } : {}),
      });
      facts.keyVersion = r.version;
      return { version: r.version };
    }),
    GetSecret: unary('GetSecret', true, async (ctx, m, facts) => {
      const version = u32('version', m.version);
      const r = await store().get(ownTenant(ctx.identity), { ...who(m), version });
      facts.keyVersion = r.version;
      return { value: r.value, version: r.version, createTime: r.createdAt };
    }),
    ListSecrets: unary('ListSecrets', false, async (ctx, m) => {
      const customer = optionalCustomer(m.customer);
      return { secrets: (await store().list(ownTenant(ctx.identity), customer)).map(metadataMessage) };
    }),
    DeleteSecret: unary('DeleteSecret', true, async (ctx, m) => ({
      secret: metadataMessage(
        await store().setDeleted(ownTenant(ctx.identity), who(m), versionsField(m.versions), true),
      ),
    })),
    UndeleteSecret: unary('UndeleteSecret', true, async (ctx, m) => ({
      secret: metadataMessage(
        await store().setDeleted(ownTenant(ctx.identity), who(m), versionsField(m.versions), false),
      ),
    })),
    DestroySecretVersions: unary('DestroySecretVersions', true, async (ctx, m) => ({
      secret: metadataMessage(
        await store().destroyVersions(ownTenant(ctx.identity), who(m), versionsField(m.versions)),
      ),
    })),
  };
}
