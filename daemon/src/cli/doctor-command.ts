/**
 * `keybroker doctor --profile <name|path> [--pin-file F] [--token-label L] [--json]`: checks that
 * the token behind an HSM profile offers every mechanism and attribute the profile relies on.
 * The PIN comes from --pin-file or KB_HSM_PIN, never from the command line (it would show in ps).
 */
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';

interface DoctorArgs {
  profile: string;
  'pin-file': string | undefined;
  'token-label': string | undefined;
  json: boolean;
}

function readPin(file: string | undefined): string {
  if (file !== undefined) {
    const pin = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    if (pin.length === 0) throw new Error(`PIN file ${file} is empty`);
    return pin;
  }
  const env = process.env.KB_HSM_PIN;
  if (env === undefined || env.length === 0) throw new Error('no PIN: pass --pin-file or set KB_HSM_PIN');
  return env;
}

/** The doctor command; exit code 0 when every check passed, 1 otherwise. */
export const doctorCommand: CommandModule<object, DoctorArgs> = {
  command: 'doctor',
  describe: 'check that an HSM token supports everything its profile relies on',
  builder: (y) =>
    y
      .option('profile', {
        type: 'string',
        demandOption: true,
        describe: 'profile name (hsm-profiles/) or path',
      })
      .option('pin-file', { type: 'string', describe: 'file holding the user PIN (else env KB_HSM_PIN)' })
      .option('token-label', { type: 'string', describe: "overrides the profile's token selection" })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }),
  handler: async (args) => {
    const [{ formatReport, runDoctor }, { loadProfile }] = await Promise.all([
      import('../hsm/hsm-doctor.ts'),
      import('../hsm/hsm-profile.ts'),
    ]);
    const profile = loadProfile(args.profile);
    const pin = readPin(args['pin-file']);
    const label = args['token-label'];
    const report = await runDoctor({ profile, pin, ...(label !== undefined ? { tokenLabel: label } : {}) });
    process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    if (!report.ok) process.exitCode = 1;
  },
};
