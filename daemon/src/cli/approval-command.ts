/**
 * `keybroker admin approval request|approve|list|cancel`: the two-person rule from the shell. A
 * destroy, an org key rotation or a policy change is requested by one admin, approved by another,
 * then executed by the first with `--approval-id` (or `admin policy set --approval-id`).
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { runClientCall } from './client-call.ts';

type Args = Parameters<typeof runClientCall>[0] & Record<string, unknown>;

const OPS: Readonly<Record<string, string>> = {
  'destroy-tenant': 'APPROVAL_OPERATION_DESTROY_TENANT',
  'destroy-customer': 'APPROVAL_OPERATION_DESTROY_CUSTOMER',
  'rotate-org-key': 'APPROVAL_OPERATION_ROTATE_ORG_KEY',
  'set-policy': 'APPROVAL_OPERATION_SET_POLICY',
  'issue-admin-certificate': 'APPROVAL_OPERATION_ISSUE_ADMIN_CERTIFICATE',
};
const STATUSES = ['pending', 'approved', 'executed', 'cancelled', 'expired'] as const;

const print = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');
const str = (v: unknown) => (typeof v === 'string' ? v : '');

const request: CommandModule<Args, Args> = {
  command: 'request <operation> <org> [tenant] [customer]',
  describe: 'ask a second admin to approve an operation (prints the approval with its id)',
  builder: (y) =>
    y
      .positional('operation', { choices: Object.keys(OPS), describe: 'what to approve' })
      .positional('org', { type: 'string', describe: 'org name' })
      .positional('tenant', { type: 'string', describe: 'tenant (destroy-tenant, destroy-customer)' })
      .positional('customer', { type: 'string', describe: 'customer (destroy-customer)' })
      .option('policy-file', {
        type: 'string',
        describe:
          'set-policy: the policy document to be applied; issue-admin-certificate: the CSR (`cert csr`); its SHA-256 is approved',
      }) as Argv<Args>,
  handler: async (a) => {
    const op = str(a.operation);
    const file = str(a['policy-file']);
    if ((op === 'set-policy' || op === 'issue-admin-certificate') && file === '')
      throw new Error(`${op} needs --policy-file`);
    const text = file === '' ? '' : readFileSync(file, 'utf8');
    const req = {
      operation: OPS[op],
      org: str(a.org),
      tenant: str(a.tenant),
      customer: str(a.customer),
      policySha256: text === '' ? '' : (await import('../policy/policy-change.ts')).policyDigest(text),
      // A policy is sent whole so the daemon validates it before an approval exists.
      policyJson: op === 'set-policy' ? text : '',
    };
    print(await runClientCall(a, 'admin', 'approvals', 'RequestApproval', req));
  },
};

const byId = (verb: string, method: string, describe: string): CommandModule<Args, Args> => ({
  command: `${verb} <approval-id>`,
  describe,
  builder: (y) => y.positional('approval-id', { type: 'string', describe: 'apr-...' }) as Argv<Args>,
  handler: async (a) => {
    print(await runClientCall(a, 'admin', 'approvals', method, { approvalId: str(a['approval-id']) }));
  },
});

const list: CommandModule<Args, Args> = {
  command: 'list <org>',
  describe: "list an org's approvals, newest first",
  builder: (y) =>
    y
      .positional('org', { type: 'string', describe: 'org name' })
      .option('status', { choices: STATUSES, describe: 'only approvals in this state' }) as Argv<Args>,
  handler: async (a) => {
    const status = str(a.status);
    const req = { org: str(a.org), ...(status ? { status: `APPROVAL_STATUS_${status.toUpperCase()}` } : {}) };
    print(await runClientCall(a, 'admin', 'approvals', 'ListApprovals', req));
  },
};

/** The `admin approval` group. */
export const approvalCommand: CommandModule<Args, Args> = {
  command: 'approval',
  describe: 'Two-person rule: request, approve, list and cancel approvals',
  builder: (y) =>
    y
      .command([
        request,
        byId('approve', 'ApproveRequest', "approve another admin's request"),
        byId('cancel', 'CancelApproval', 'withdraw a pending or approved request'),
        list,
      ])
      .demandCommand(1, 'name an approval action: request, approve, list, cancel'),
  handler: () => undefined,
};
