#!/usr/bin/env node
/**
 * The keybroker CLI: one yargs command per file in this folder, registered here.
 * Exit codes: 0 ok, 1 operation failed, 2 usage error.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { CommandModule } from 'yargs';
import { auditCommand } from './audit-command.ts';
import { backupCommand } from './backup-command.ts';
import { doctorCommand } from './doctor-command.ts';
import { adminCommand } from './admin-command.ts';
import { dataKeyCommand } from './data-key-command.ts';
import { decryptCommand, encryptCommand } from './encrypt-command.ts';
import { indexCommand } from './index-command.ts';
import { initCommand } from './init-command.ts';
import { restoreCommand } from './restore-command.ts';
import { secretCommand } from './secret-command.ts';
import { serveCommand } from './serve-command.ts';

// Each command file exports one CommandModule; add new ones to this list.
const commands: CommandModule[] = [
  doctorCommand as CommandModule,
  serveCommand as CommandModule,
  initCommand as CommandModule,
  adminCommand as CommandModule,
  encryptCommand as CommandModule,
  decryptCommand as CommandModule,
  dataKeyCommand as CommandModule,
  secretCommand as CommandModule,
  indexCommand as CommandModule,
  backupCommand as CommandModule,
  restoreCommand as CommandModule,
  auditCommand,
];

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
