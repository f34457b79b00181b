#!/usr/bin/env node
/**
 * The keybroker CLI: one yargs command per file in this folder, registered here.
 * Exit codes: 0 ok, 1 operation failed, 2 usage error.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { CommandModule } from 'yargs';
import { auditCommand } from './audit-command.ts';
import { doctorCommand } from './doctor-command.ts';

// Each command file exports one CommandModule; add new ones to this list.
const commands: CommandModule[] = [doctorCommand as CommandModule, auditCommand];

await yargs(hideBin(process.argv))
  .scriptName('keybroker')
  .command(commands)
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .help()
  .fail((msg, err, y) => {
    if (err) {
      process.stderr.write(`keybroker: ${err.message}\n`);
      process.exit(1);
    }
    y.showHelp();
    process.stderr.write(`\nkeybroker: ${msg}\n`);
    process.exit(2);
  })
  .parseAsync();
