#!/usr/bin/env node
/**
 * The keybroker CLI: one yargs command per file in this folder, registered here.
 * Exit codes: 0 ok, 1 operation failed, 2 usage error.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { CommandModule } from 'yargs';
import { auditCommand } from './audit-command.ts';
import { certCommand } from './cert-command.ts';
import { backupCommand } from './backup-command.ts';
import { doctorCommand } from './doctor-command.ts';
import { adminCommand } from './admin-command.ts';
import { dataKeyCommand } from './data-key-command.ts';
import { decryptCommand, encryptCommand } from './encrypt-command.ts';
import { decryptBatchCommand, encryptBatchCommand } from './batch-command.ts';
import { initCommand } from './init-command.ts';
import { keysCommand } from './keys-command.ts';
import { rewrapCommand } from './rewrap-command.ts';
import { indexCommand } from './index-command.ts';
import { restoreCommand } from './restore-command.ts';
import { secretCommand } from './secret-command.ts';
import { receiptCommand } from './receipt-command.ts';
import { brokerKeysCommand } from './broker-keys-command.ts';
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
  encryptBatchCommand as CommandModule,
  decryptBatchCommand as CommandModule,
  rewrapCommand as CommandModule,
  keysCommand as CommandModule,
  secretCommand as CommandModule,
  indexCommand as CommandModule,
  backupCommand as CommandModule,
  restoreCommand as CommandModule,
  auditCommand,
  certCommand as CommandModule,
  brokerKeysCommand,
  receiptCommand,
];

/** The CLI's parser over `args`; `test/docs/commands.test.ts` parses documented commands with it. */
export function buildCli(args: string[]) {
  return (
    yargs(args)
      .scriptName('keybroker')
      .command(commands)
      .demandCommand(1, 'name a command (see --help)')
      .strict()
      // No yargs --version: `admin key-version --version N` names a key version.
      .version(false)
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
  );
}

// Run only as the program, not when a test imports the parser.
if (import.meta.main) await buildCli(hideBin(process.argv)).parseAsync();
