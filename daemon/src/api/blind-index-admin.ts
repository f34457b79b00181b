/**
 * The blind-index RPCs of keybroker.v1.Admin (define, rotate, retire versions, list): every
 * request names its org and tenant, and the authoriser decides whether this admin may act there
 * (roles in policy/admin-roles.ts). The index name goes to the authoriser as the key name, so
 * policy `keys` globs apply, and into the audit record.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { TenantRef } from '../ids.ts';
import { blindIndexName } from '../keys/blind-indexes.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { AuditFacts, CallGate, CallTarget } from './call-gate.ts';
import {
  blindIndexMessage,
  blindIndexesOf,
  normalizationField,
  outputBytesField,
} from './blind-index-messages.ts';
import { tenantRefOf } from './request-bounds.ts';

const RPC = 'keybroker.v1.Admin/';

type Req = Record<string, unknown>;
interface Parsed {
  readonly ref: TenantRef;
  readonly index?: string;
}

/** The Admin handlers for blind-index definitions (merged into adminService). */
export function blindIndexAdminRpcs(
  gate: CallGate,
  broker: () => KeyBrokerApi,
): UntypedServiceImplementation {
  const rpc = (
    name: string,
    named: boolean,
    run: (p: Parsed, r: Req, facts: AuditFacts) => Promise<object>,
  ) => {
    const parsed = new WeakMap<Req, Parsed>();
    const parse = (r: Req): Parsed => ({
      ref: tenantRefOf(r.org, r.tenant),
      ...(named ? { index: blindIndexName(r.index) } : {}),
    });
    return gate.unary<Req, object>(RPC + name, {
      target: (_id, r): CallTarget & { keyName?: string } => {
        const p = parse(r);
        parsed.set(r, p);
        return {
          org: p.ref.org,
          tenant: p.ref.tenant,
          ...(p.index !== undefined ? { keyName: p.index } : {}),
        };
      },
      handle: (_ctx, r, facts) => {
        const p = parsed.get(r) ?? parse(r);
        if (p.index !== undefined) facts.keyName = p.index;
        return run(p, r, facts);
      },
    });
  };
  const idx = () => blindIndexesOf(broker());
  const withVersion = (facts: AuditFacts, i: { primaryVersion: number }) => {
    facts.keyVersion = i.primaryVersion;
    return { index: blindIndexMessage(i as Parameters<typeof blindIndexMessage>[0]) };
  };
  return {
    CreateBlindIndex: rpc('CreateBlindIndex', true, async (p, r, facts) => {
      const outputBytes = outputBytesField(r.outputBytes, false) as 16 | 32;
      const info = await idx().create(p.ref, p.index as string, {
        normalization: normalizationField(r.normalization),
        outputBytes,
      });
      return withVersion(facts, info);
    }),
    RotateBlindIndex: rpc('RotateBlindIndex', true, async (p, r, facts) => {
      const outputBytes = outputBytesField(r.outputBytes, true);
      const info = await idx().rotate(p.ref, p.index as string, {
        ...(r.changeNormalization === true ? { normalization: normalizationField(r.normalization) } : {}),
        ...(outputBytes !== undefined ? { outputBytes } : {}),
      });
      return withVersion(facts, info);
    }),
    SetBlindIndexMinVersion: rpc('SetBlindIndexMinVersion', true, async (p, r, facts) => {
      const info = await idx().setMinVersion(p.ref, p.index as string, r.minVersion as number);
      return withVersion(facts, info);
    }),
    ListBlindIndexes: rpc('ListBlindIndexes', false, async (p) => ({
      indexes: (await idx().list(p.ref)).map(blindIndexMessage),
    })),
  };
}
