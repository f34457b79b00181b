/**
 * Which role each control-plane RPC (services Admin, Approvals, Policy) needs (viewer < operator
 * < admin). A policy document may override entries through `adminRpcRoles`; a control-plane RPC
 * in neither table needs `admin`, so a new method is never weaker than the strongest role by accident.
 */
import type { Role } from './authorizer.ts';

/** The Admin service prefix; every method below is "keybroker.v1.Admin/<Method>". */
export const ADMIN_PREFIX = 'keybroker.v1.Admin/';
/** The two-person rule's service (proto/keybroker/v1/approvals.proto). */
export const APPROVALS_PREFIX = 'keybroker.v1.Approvals/';
/** The policy service (proto/keybroker/v1/policy.proto). */
export const POLICY_PREFIX = 'keybroker.v1.Policy/';
const CONTROL_PLANE = [ADMIN_PREFIX, APPROVALS_PREFIX, POLICY_PREFIX];

const RANK: Readonly<Record<Role, number>> = { viewer: 1, operator: 2, admin: 3 };

/** Role rank for comparisons; 0 for "no role". */
export function roleRank(role: Role | undefined): number {
  return role === undefined ? 0 : RANK[role];
}

/** The highest of `roles`, or undefined for none. */
export function highestRole(roles: Iterable<Role>): Role | undefined {
  let best: Role | undefined;
  for (const r of roles) if (roleRank(r) > roleRank(best)) best = r;
  return best;
}

const table: Record<string, Role> = {};
const add = (role: Role, methods: readonly string[]): void => {
  for (const m of methods) table[m.includes('/') ? `keybroker.v1.${m}` : ADMIN_PREFIX + m] = role;
};
// Names from proto/keybroker/v1/{admin,approvals,policy}.proto ("Service/Method" outside Admin).
// Read-only views of the hierarchy, policy and approvals.
add('viewer', [
  'ListOrgs',
  'DescribeOrg',
  'ListTenants',
  'DescribeTenant',
  'ListCustomers',
  'DescribeCustomer',
  // Public keys only (receipt and audit checkpoint keys), published for pinning.
  'GetBrokerKeys',
  'Policy/GetPolicy',
  'Approvals/ListApprovals',
  'ListBlindIndexes',
]);
// Day-to-day lifecycle that destroys nothing and creates no trust root.
add('operator', [
  'CreateCustomer',
  'SetCustomerEnabled',
  'SetTenantEnabled',
  'RotateTenantKey',
  'RotateCustomerKey',
  'SetKeyPolicy',
  'SetKeyVersionEnabled',
  'RotateDueKeys',
  // Blind-index definitions: new versions and retiring old ones destroy nothing (keys are derived).
  'CreateBlindIndex',
  'RotateBlindIndex',
  'SetBlindIndexMinVersion',
]);
// Orgs and tenants, destruction, root-key (OEK) rotation, policy, and the two-person workflow.
add('admin', [
  'CreateOrg',
  'SetOrgEnabled',
  'RotateOrgKey',
  'CreateTenant',
  // The bulk form of CreateTenant (up to 1,000 per call): the same role, never a weaker one.
  'CreateTenants',
  'DestroyTenant',
  'DestroyCustomer',
  'Policy/SetPolicy',
  'Approvals/RequestApproval',
  'Approvals/ApproveRequest',
  'Approvals/CancelApproval',
]);

/** Default role per control-plane RPC. */
export const DEFAULT_ADMIN_RPC_ROLES: ReadonlyMap<string, Role> = new Map(Object.entries(table));

/** The role `rpc` needs, or undefined when it is not a control-plane RPC. */
export function requiredRole(rpc: string, overrides?: ReadonlyMap<string, Role>): Role | undefined {
  if (!CONTROL_PLANE.some((p) => rpc.startsWith(p))) return undefined;
  return overrides?.get(rpc) ?? DEFAULT_ADMIN_RPC_ROLES.get(rpc) ?? 'admin';
}
