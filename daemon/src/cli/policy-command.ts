/**
 * `keybroker admin policy get|set`: read the access policy in force, or replace it with an
 * approved document (`admin approval request set-policy <org> --policy-file f` first).
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { runClientCall } from './client-call.ts';

type Args = Parameters<typeof runClientCall>[0] & Record<string, unknown>;

const print = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');

const get: CommandModule<Args, Args> = {
  command: 'get',
  describe: 'print the policy in force (JSON with digest, source and FIPS mode)',
  builder: (y) =>
    y.option('document', {
      type: 'boolean',
      default: false,
      describe: 'print only the policy document',
    }) as Argv<Args>,
  handler: async (a) => {
    const r = await runClientCall(a, 'admin', 'policy', 'GetPolicy', {});
    if (a.document === true) process.stdout.write(`${String(r.policyJson)}\n`);
    else print(r);
  },
};

const set: CommandModule<Args, Args> = {
  command: 'set <file>',
  describe: 'replace the policy with <file> (validated first; needs an approved set-policy approval)',
  builder: (y) =>
    y.positional('file', { type: 'string', describe: 'policy document (JSON)' }).option('approval-id', {
      type: 'string',
      describe: 'approved set-policy approval for this file',
    }) as Argv<Args>,
  handler: async (a) => {
    const req = {
      policyJson: readFileSync(String(a.file), 'utf8'),
      approvalId: typeof a['approval-id'] === 'string' ? a['approval-id'] : '',
    };
    print(await runClientCall(a, 'admin', 'policy', 'SetPolicy', req));
  },
};

/** The `admin policy` group. */
export const policyCommand: CommandModule<Args, Args> = {
  command: 'policy',
  describe: 'The access policy: get, set (two-person rule)',
  builder: (y) => y.command([get, set]).demandCommand(1, 'name a policy action: get, set'),
  handler: () => undefined,
};
