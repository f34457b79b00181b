/**
 * `keybroker admin tenant create-many <org> [names..] [--file F]`: bulk provisioning (migrating
 * many tenants) through Admin.CreateTenants, 1,000 names per call. Names come from the arguments
 * and/or a file (one per line, `-` for stdin; blank lines and `#` comments skipped). Prints a JSON
 * summary; names that already exist are listed, not fatal. Any other failure exits 1; the calls
 * before it stay done (each call is durable on its own), so re-running the same list resumes.
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { runClientCall } from './client-call.ts';

/** Names per CreateTenants call (the RPC's maximum). */
const PER_CALL = 1000;

type Args = Record<string, unknown>;

/** Names from the positionals and the --file, in order. */
export function tenantNamesOf(positional: unknown, file: unknown): string[] {
  const names = Array.isArray(positional) ? positional.map(String) : [];
  if (typeof file === 'string') {
    const text = readFileSync(file === '-' ? 0 : file, 'utf8');
    for (const line of text.split('\n')) {
      const n = line.trim();
      if (n !== '' && !n.startsWith('#')) names.push(n);
    }
  }
  return names;
}

export const tenantCreateManyCommand: CommandModule<Args, Args> = {
  command: 'create-many <org> [tenants..]',
  describe: 'create many tenants, 1,000 per durable batch (names as arguments and/or --file)',
  builder: (y) =>
    y
      .positional('org', { type: 'string', describe: 'org name' })
      .positional('tenants', { type: 'string', array: true, describe: 'tenant names' })
      .option('file', {
        type: 'string',
        describe: 'file with one tenant name per line (- for stdin)',
      }) as Argv<Args>,
  handler: async (a) => {
    const names = tenantNamesOf(a.tenants, a.file);
    if (names.length === 0) {
      process.stderr.write('keybroker: create-many: no tenant names (arguments or --file)\n');
      process.exit(2);
    }
    let created = 0;
    const alreadyExisted: string[] = [];
    let calls = 0;
    for (let i = 0; i < names.length; i += PER_CALL) {
      const r = await runClientCall(
        a as Parameters<typeof runClientCall>[0],
        'admin',
        'admin',
        'CreateTenants',
        {
          org: a.org,
          tenants: names.slice(i, i + PER_CALL),
        },
      );
      calls++;
      created += Number(r.created ?? 0);
      for (const x of (r.results ?? []) as { name?: string; error?: unknown }[])
        if (x.error !== undefined && x.error !== null) alreadyExisted.push(String(x.name));
    }
    process.stdout.write(JSON.stringify({ created, alreadyExisted, calls }, null, 2) + '\n');
  },
};
