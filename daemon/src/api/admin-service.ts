/**
 * keybroker.v1.Admin: a thin layer over KeyBrokerApi. Every request names its org (and tenant);
 * the authorizer decides whether this admin may act there.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import type { CustomerId, OrgId, TenantId, TenantRef } from '../ids.ts';
import { MAX_TENANTS_PER_BATCH } from '../keys/bulk-tenants.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { Governance } from './approvals-service.ts';
import { withApproval } from './approvals-service.ts';
import type { AuditFacts, CallContext, CallGate, CallTarget } from './call-gate.ts';
import {
  brokerKeysMessage,
  customerMessage,
  keyMessage,
  orgMessage,
  receiptMessage,
  tenantMessage,
} from './admin-messages.ts';
import { withShredApproval } from './shred-approval.ts';
import { itemErrorMessage } from './keys-messages.ts';
import { blindIndexAdminRpcs } from './blind-index-admin.ts';
import {
  batchItems,
  newTenantName,
  optionalCustomer,
  policyUpdate,
  requiredCustomer,
  requiredOrg,
  tenantRefOf,
  versionField,
} from './request-bounds.ts';

const RPC = 'keybroker.v1.Admin/';

/** CreateTenants names: 1 to MAX_TENANTS_PER_BATCH, each valid, new-able and given once. */
function tenantNames(v: unknown): TenantId[] {
  const names = batchItems<unknown>('tenants', v, MAX_TENANTS_PER_BATCH).map(newTenantName);
  if (new Set(names).size !== names.length)
    throw new KbError('INVALID_ARGUMENT', 'a tenant name appears more than once');
  return names;
}

type Req = Record<string, unknown>;

/** The Admin RPCs that only read; every other one changes state (`mutating`: intent record first). */
const READS: ReadonlySet<string> = new Set([
  'ListOrgs',
  'DescribeOrg',
  'ListTenants',
  'DescribeTenant',
  'ListCustomers',
  'DescribeCustomer',
]);

interface Parsed {
  org?: OrgId;
  /** CreateTenants: the validated, distinct new names. */
  names?: TenantId[];
  ref?: TenantRef;
  customer?: CustomerId;
}

/**
 * Build the Admin service implementation. With `governance`, DestroyTenant, DestroyCustomer and
 * RotateOrgKey first consume an approval (two-person rule) when the rule is on.
 */
export function adminService(
  gate: CallGate,
  broker: () => KeyBrokerApi,
  governance?: Governance,
): UntypedServiceImplementation {
  // Each RPC parses its names once (in `target`, before authorisation) and reuses them.
  const rpc = (
    name: string,
    parse: (r: Req) => Parsed,
    run: (p: Parsed, r: Req, ctx: CallContext, facts: AuditFacts) => Promise<object>,
    cost?: (r: Req) => number,
  ) => {
    const parsed = new WeakMap<Req, Parsed>();
    return gate.unary<Req, object>(RPC + name, {
      target: (id, r) => {
        const p = parse(r);
        parsed.set(r, p);
        const org = p.ref?.org ?? p.org ?? id.org;
        const t: CallTarget = {
          ...(org !== undefined ? { org } : {}),
          ...(p.ref !== undefined ? { tenant: p.ref.tenant } : {}),
          ...(p.customer !== undefined ? { customer: p.customer } : {}),
        };
        return t;
      },
      handle: (ctx, r, facts) => run(parsed.get(r) ?? parse(r), r, ctx, facts),
      mutating: !READS.has(name),
      ...(cost !== undefined ? { cost } : {}),
    });
  };
  const org = (r: Req): Parsed => ({ org: requiredOrg(r.org) });
  const tenant = (r: Req): Parsed => ({ ref: tenantRefOf(r.org, r.tenant) });
  const customer = (r: Req): Parsed => ({
    ref: tenantRefOf(r.org, r.tenant),
    customer: requiredCustomer(r.customer),
  });
  const keyOwner = (r: Req): Parsed => {
    const c = optionalCustomer(r.customer);
    return { ref: tenantRefOf(r.org, r.tenant), ...(c !== undefined ? { customer: c } : {}) };
  };
  const b = broker;
  const O = (p: Parsed) => p.org as OrgId;
  const T = (p: Parsed) => p.ref as TenantRef;
  const C = (p: Parsed) => p.customer as CustomerId;

  return {
    CreateOrg: rpc('CreateOrg', org, async (p) => ({ org: orgMessage(await b().createOrg(O(p))) })),
    // ListOrgs and RotateDueKeys name no org: they act on the caller's own.
    ListOrgs: rpc(
      'ListOrgs',
      () => ({}),
      async (_p, _r, ctx) => ({
        // The default policy scopes admins to their org, so they see only their org.
        orgs: (await b().listOrgs()).filter((o) => o.org === ctx.identity.org).map(orgMessage),
      }),
    ),
    DescribeOrg: rpc('DescribeOrg', org, async (p) => ({ org: orgMessage(await b().describeOrg(O(p))) })),
    SetOrgEnabled: rpc('SetOrgEnabled', org, async (p, r) => ({
      org: orgMessage(await b().setOrgEnabled(O(p), r.enabled === true)),
    })),
    RotateOrgKey: rpc('RotateOrgKey', org, async (p, r, ctx, facts) =>
      withApproval(governance, ctx, facts, r.approvalId, 'rotate-oek', { org: O(p) }, async () => ({
        org: orgMessage(await b().rotateOrgKey(O(p))),
      })),
    ),

    CreateTenant: rpc(
      'CreateTenant',
      (r) => ({ ref: { org: requiredOrg(r.org), tenant: newTenantName(r.tenant) } }),
      async (p, r) => {
        const t = T(p);
        return { tenant: tenantMessage(await b().createTenant(t.org, t.tenant, policyUpdate(r.policy))) };
      },
    ),
    // Bulk provisioning: one durable batch; per-name results (ALREADY_EXISTS), one audit record
    // naming the count. Costs its name count against the rate limit, like a data-plane batch.
    CreateTenants: rpc(
      'CreateTenants',
      (r) => ({ org: requiredOrg(r.org), names: tenantNames(r.tenants) }),
      async (p, r, _ctx, facts) => {
        const api = b();
        if (!api.createTenants) throw new KbError('UNIMPLEMENTED', 'CreateTenants');
        const results = await api.createTenants(O(p), p.names ?? [], policyUpdate(r.policy));
        const created = results.filter((x) => x.ok).length;
        facts.reason = `created ${created} of ${results.length} tenants`;
        return {
          created,
          results: results.map((x) =>
            x.ok
              ? { name: x.tenant, tenant: tenantMessage(x.info) }
              : { name: x.tenant, error: itemErrorMessage(x.error) },
          ),
        };
      },
      (r) => (Array.isArray(r.tenants) ? Math.max(1, Math.min(r.tenants.length, MAX_TENANTS_PER_BATCH)) : 1),
    ),
    ListTenants: rpc('ListTenants', org, async (p) => ({
      tenants: (await b().listTenants(O(p))).map(tenantMessage),
    })),
    DescribeTenant: rpc('DescribeTenant', tenant, async (p) => ({
      tenant: tenantMessage(await b().describeTenant(T(p))),
    })),
    SetTenantEnabled: rpc('SetTenantEnabled', tenant, async (p, r) => ({
      tenant: tenantMessage(await b().setTenantEnabled(T(p), r.enabled === true)),
    })),
    RotateTenantKey: rpc('RotateTenantKey', tenant, async (p) => ({
      tenant: tenantMessage(await b().rotateTenantKey(T(p))),
    })),
    DestroyTenant: rpc('DestroyTenant', tenant, async (p, r, ctx, facts) => {
      const t = T(p);
      const target = { org: t.org, tenant: t.tenant };
      const api = b();
      const receipt = await withShredApproval(
        governance,
        api,
        ctx,
        facts,
        r.approvalId,
        'destroy-tenant',
        target,
        (id) => api.destroyTenant(t, id !== undefined ? { approvalId: id } : {}),
      );
      return { receipt: receiptMessage(receipt) };
    }),

    CreateCustomer: rpc('CreateCustomer', customer, async (p, r) => ({
      customer: customerMessage(await b().createCustomer(T(p), C(p), policyUpdate(r.policy))),
    })),
    ListCustomers: rpc('ListCustomers', tenant, async (p) => ({
      customers: (await b().listCustomers(T(p))).map(customerMessage),
    })),
    DescribeCustomer: rpc('DescribeCustomer', customer, async (p) => ({
      customer: customerMessage(await b().describeCustomer(T(p), C(p))),
    })),
    SetCustomerEnabled: rpc('SetCustomerEnabled', customer, async (p, r) => ({
      customer: customerMessage(await b().setCustomerEnabled(T(p), C(p), r.enabled === true)),
    })),
    RotateCustomerKey: rpc('RotateCustomerKey', customer, async (p) => ({
      customer: customerMessage(await b().rotateCustomerKey(T(p), C(p))),
    })),
    DestroyCustomer: rpc('DestroyCustomer', customer, async (p, r, ctx, facts) => {
      const t = { org: T(p).org, tenant: T(p).tenant, customer: C(p) };
      const api = b();
      const receipt = await withShredApproval(
        governance,
        api,
        ctx,
        facts,
        r.approvalId,
        'destroy-customer',
        t,
        (id) => api.destroyCustomer(T(p), C(p), id !== undefined ? { approvalId: id } : {}),
      );
      return { receipt: receiptMessage(receipt) };
    }),
    // Public keys for pinning (receipts, audit checkpoints); daemon-wide, so no org target.
    GetBrokerKeys: rpc(
      'GetBrokerKeys',
      () => ({}),
      async () => {
        const api = b();
        if (!api.brokerKeys) throw new KbError('UNIMPLEMENTED', 'GetBrokerKeys');
        return brokerKeysMessage(await api.brokerKeys());
      },
    ),

    SetKeyPolicy: rpc('SetKeyPolicy', keyOwner, async (p, r) => ({
      key: keyMessage(await b().setKeyPolicy(T(p), p.customer, policyUpdate(r.policy))),
    })),
    SetKeyVersionEnabled: rpc('SetKeyVersionEnabled', keyOwner, async (p, r) => ({
      key: keyMessage(
        await b().setKeyVersionEnabled(T(p), p.customer, versionField(r.version), r.enabled === true),
      ),
    })),
    RotateDueKeys: rpc(
      'RotateDueKeys',
      () => ({}),
      async (_p, _r, ctx) => b().rotateDueKeys(undefined, ctx.identity.org),
    ),
    ...blindIndexAdminRpcs(gate, broker),
  };
}
