/**
 * `keybroker admin <org|tenant|customer|key-policy|key-version|rotate-due|keys> ...`: the Admin API
 * from the shell, as the data dir's admin identity (or --cert/--key). Prints JSON on stdout.
 */
import type { Argv, CommandModule } from 'yargs';
import { CLIENT_OPTIONS } from '../config/client-options.ts';
import { approvalCommand } from './approval-command.ts';
import type { ConnArgs } from './client-call.ts';
import { printJson, runClientCall } from './client-call.ts';
import { policyCommand } from './policy-command.ts';
import { tenantCreateManyCommand } from './tenant-create-many.ts';

/** Kept here for the commands that import it from this file. */
export { runClientCall };

type Args = ConnArgs & Record<string, unknown>;

const print = printJson;

type Positional = 'org' | 'tenant' | 'customer';
const POS: Record<Positional, string> = { org: 'org name', tenant: 'tenant name', customer: 'customer name' };

/** One leaf subcommand: `<verb> <positionals...>` calling `method` with the positionals (+ extra). */
function leaf(
  verb: string,
  positionals: readonly Positional[],
  method: string,
  describe: string,
  extra: (a: Args) => object = () => ({}),
  options: (y: Argv<Args>) => Argv<Args> = (y) => y,
): CommandModule<Args, Args> {
  return {
    command: [verb, ...positionals.map((p) => `<${p}>`)].join(' '),
    describe,
    builder: (y) => {
      let out = y as Argv<Args>;
      for (const p of positionals)
        out = out.positional(p, { type: 'string', describe: POS[p] }) as Argv<Args>;
      return options(out);
    },
    handler: async (a) => {
      const req: Record<string, unknown> = { ...extra(a) };
      for (const p of positionals) req[p] = a[p];
      print(await runClientCall(a, 'admin', 'admin', method, req));
    },
  };
}

const enable = (on: boolean) => () => ({ enabled: on });
/** Two-person rule: the approved approval for this destroy / org key rotation. */
const approval = (a: Args) => ({ approvalId: typeof a['approval-id'] === 'string' ? a['approval-id'] : '' });
const approvalOption = (y: Argv<Args>) =>
  y.option('approval-id', {
    type: 'string',
    describe: 'approved approval (keybroker admin approval request ...)',
  }) as Argv<Args>;

function group(
  name: string,
  describe: string,
  leaves: CommandModule<Args, Args>[],
): CommandModule<Args, Args> {
  return {
    command: name,
    describe,
    builder: (y) => y.command(leaves).demandCommand(1, `name an ${name} action`),
    handler: () => undefined,
  };
}

const policyOptions = (y: Argv<Args>) =>
  y
    .option('customer', { type: 'string', describe: 'customer key instead of the tenant key' })
    .option('rotation-period-days', { type: 'number', describe: 'scheduled rotation period (0: off)' })
    .option('usage-limit', { type: 'number', describe: 'rotate after this many operations (0: off)' })
    .option('min-encrypt-version', { type: 'number' })
    .option('min-decrypt-version', { type: 'number' }) as Argv<Args>;

function policyOf(a: Args): object {
  const p: Record<string, number> = {};
  if (typeof a['rotation-period-days'] === 'number')
    p.rotationPeriodSeconds = Math.round(a['rotation-period-days'] * 86400);
  if (typeof a['usage-limit'] === 'number') p.usageLimit = a['usage-limit'];
  if (typeof a['min-encrypt-version'] === 'number') p.minEncryptVersion = a['min-encrypt-version'];
  if (typeof a['min-decrypt-version'] === 'number') p.minDecryptVersion = a['min-decrypt-version'];
  return { policy: p, customer: typeof a.customer === 'string' ? a.customer : '' };
}

export const adminCommand: CommandModule<object, Args> = {
  command: 'admin',
  describe: 'Administer orgs, tenants, customers and keys of a running daemon (admin identity)',
  builder: (y) =>
    (y.options(CLIENT_OPTIONS) as unknown as Argv<Args>)
      .command([
        group('org', 'Orgs and their root keys (in the HSM)', [
          leaf('create', ['org'], 'CreateOrg', 'create an org and its root key'),
          leaf('list', [], 'ListOrgs', 'list orgs'),
          leaf('describe', ['org'], 'DescribeOrg', 'show an org and its key versions'),
          leaf(
            'rotate',
            ['org'],
            'RotateOrgKey',
            'new root key version; rewrap tenant keys',
            approval,
            approvalOption,
          ),
          leaf('enable', ['org'], 'SetOrgEnabled', 'enable an org', enable(true)),
          leaf('disable', ['org'], 'SetOrgEnabled', 'disable an org', enable(false)),
        ]),
        group('tenant', 'Tenants and their keys', [
          leaf('create', ['org', 'tenant'], 'CreateTenant', 'create a tenant'),
          tenantCreateManyCommand,
          leaf('list', ['org'], 'ListTenants', "list an org's tenants"),
          leaf('describe', ['org', 'tenant'], 'DescribeTenant', 'show a tenant and its key versions'),
          leaf('rotate', ['org', 'tenant'], 'RotateTenantKey', 'new tenant key version'),
          leaf('enable', ['org', 'tenant'], 'SetTenantEnabled', 'enable a tenant', enable(true)),
          leaf('disable', ['org', 'tenant'], 'SetTenantEnabled', 'disable a tenant', enable(false)),
          leaf(
            'destroy',
            ['org', 'tenant'],
            'DestroyTenant',
            'crypto-shred a tenant; prints the signed receipt',
            approval,
            approvalOption,
          ),
        ]),
        group('customer', 'Customers of a tenant and their keys', [
          leaf('create', ['org', 'tenant', 'customer'], 'CreateCustomer', 'create a customer'),
          leaf('list', ['org', 'tenant'], 'ListCustomers', "list a tenant's customers"),
          leaf(
            'describe',
            ['org', 'tenant', 'customer'],
            'DescribeCustomer',
            'show a customer and its key versions',
          ),
          leaf('rotate', ['org', 'tenant', 'customer'], 'RotateCustomerKey', 'new customer key version'),
          leaf(
            'enable',
            ['org', 'tenant', 'customer'],
            'SetCustomerEnabled',
            'enable a customer',
            enable(true),
          ),
          leaf(
            'disable',
            ['org', 'tenant', 'customer'],
            'SetCustomerEnabled',
            'disable a customer',
            enable(false),
          ),
          leaf(
            'destroy',
            ['org', 'tenant', 'customer'],
            'DestroyCustomer',
            'crypto-shred a customer; prints the receipt',
            approval,
            approvalOption,
          ),
        ]),
        leaf(
          'key-policy',
          ['org', 'tenant'],
          'SetKeyPolicy',
          'set rotation policy / version window',
          policyOf,
          policyOptions,
        ),
        leaf(
          'key-version',
          ['org', 'tenant'],
          'SetKeyVersionEnabled',
          'enable or disable one key version',
          (a) => ({
            version: a.version,
            enabled: a.enabled,
            customer: typeof a.customer === 'string' ? a.customer : '',
          }),
          (y) =>
            y
              .option('version', {
                alias: 'key-version',
                type: 'number',
                demandOption: true,
                describe: 'the key version to enable or disable',
              })
              .option('enabled', { type: 'boolean', demandOption: true })
              .option('customer', { type: 'string' }) as Argv<Args>,
        ),
        leaf('rotate-due', [], 'RotateDueKeys', 'run the scheduled rotation pass now'),
        leaf(
          'keys',
          [],
          'GetBrokerKeys',
          "the broker's receipt and audit checkpoint public keys with SHA-256 fingerprints, to pin",
        ),
        approvalCommand,
        policyCommand,
      ])
      .demandCommand(
        1,
        'name a resource: org, tenant, customer, key-policy, key-version, rotate-due, approval, policy',
      ) as Argv<Args>,
  handler: () => undefined,
};
