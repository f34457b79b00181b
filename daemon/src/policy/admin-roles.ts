/**
 * Which role each Admin RPC needs (viewer < operator < admin). A policy document may override
 * entries through `adminRpcRoles`; an Admin RPC that is in neither table needs `admin`, so a new
 * method is never weaker than the strongest role by accident.
 */
import type { Role } from './authorizer.ts';

/** The Admin service prefix; every method below is "keybroker.v1.Admin/<Method>". */
export const ADMIN_PREFIX = 'keybroker.v1.Admin/';

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
  for (const m of methods) table[ADMIN_PREFIX + m] = role;
};
// Names from proto/keybroker/v1/admin.proto, plus methods planned by the audit/approval work.
// Read-only views of the hierarchy, policy, approvals and audit.
add('viewer', [
  'ListOrgs',
  'DescribeOrg',
  'ListTenants',
  'DescribeTenant',
  'ListCustomers',
  'DescribeCustomer',
  'GetPolicy',
  'ListApprovals',
  'GetAuditHead',
  'ExportAuditCheckpoints',
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
]);
// Orgs and tenants, destruction, root-key (OEK) rotation, policy, and the two-person workflow.
add('admin', [
  'CreateOrg',
  'SetOrgEnabled',
  'RotateOrgKey',
  'CreateTenant',
  'DestroyTenant',
  'DestroyCustomer',
  'SetPolicy',
  'ReloadPolicy',
  'RequestApproval',
  'ApproveRequest',
  'ExecuteApproval',
  'CancelApproval',
]);

/** Default role per Admin RPC. */
export const DEFAULT_ADMIN_RPC_ROLES: ReadonlyMap<string, Role> = new Map(Object.entries(table));

/** The role `rpc` needs, or undefined when it is not an Admin RPC. */
export function requiredRole(rpc: string, overrides?: ReadonlyMap<string, Role>): Role | undefined {
  if (!rpc.startsWith(ADMIN_PREFIX)) return undefined;
  return overrides?.get(rpc) ?? DEFAULT_ADMIN_RPC_ROLES.get(rpc) ?? 'admin';
}
