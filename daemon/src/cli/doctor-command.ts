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
  'data-dir': string | undefined;
  'softhsm-conf': string | undefined;
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
      .option('data-dir', {
        type: 'string',
        describe: "the broker's data dir: warn if the SoftHSM2 token directory lies inside it",
      })
      .option('softhsm-conf', { type: 'string', describe: 'SoftHSM2 config (default: SOFTHSM2_CONF)' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }),
  handler: async (args) => {
    const [{ formatReport, runDoctor }, { loadProfile }] = await Promise.all([
      import('../hsm/hsm-doctor.ts'),
      import('../hsm/hsm-profile.ts'),
    ]);
    const profile = loadProfile(args.profile);
    const pin = readPin(args['pin-file']);
    const label = args['token-label'];
    const conf = args['softhsm-conf'];
    // The module reads SOFTHSM2_CONF at C_Initialize: point it at the config checked.
    if (conf !== undefined) process.env.SOFTHSM2_CONF = conf;
    const report = await runDoctor({
      profile,
      pin,
      ...(label !== undefined ? { tokenLabel: label } : {}),
      ...(args['data-dir'] !== undefined ? { dataDir: args['data-dir'] } : {}),
      ...(conf !== undefined ? { softhsmConf: conf } : {}),
    });
    process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    if (!report.ok) process.exitCode = 1;
  },
};
