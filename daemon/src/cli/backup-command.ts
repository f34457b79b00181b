/**
 * `keybroker backup --config keybroker.json --out DIR`: an online backup of the daemon's data
 * dir while it serves (store/online-backup.ts): every tenant file and the registry through
 * SQLite's online backup API, and a manifest (checksums, schema versions, HSM token, last shred
 * epoch). No HSM access and no PIN needed; the backup holds neither. Prints the manifest summary.
 */
import type { CommandModule } from 'yargs';

interface Args {
  config: string;
  out: string;
}

export const backupCommand: CommandModule<object, Args> = {
  command: 'backup',
  describe: 'online backup of the data dir (registry and tenant files) with a manifest',
  builder: (y) =>
    y
      .option('config', {
        type: 'string',
        demandOption: true,
        describe: 'the daemon config (keybroker.json)',
      })
      .option('out', { type: 'string', demandOption: true, describe: 'new or empty backup directory' }),
  handler: async (a) => {
    const cfg = (await import('../config/load-config.ts')).loadConfig(a.config);
    const m = await (
      await import('../store/online-backup.ts')
    ).backupDataDir({
      dataDir: cfg.dataDir,
      outDir: a.out,
      hsm: { profile: cfg.hsm.profile, tokenLabel: cfg.hsm.tokenLabel },
    });
    const summary = {
      out: a.out,
      createdAt: m.createdAt,
      files: m.files.length,
      bytes: m.files.reduce((n, f) => n + f.bytes, 0),
      hsmToken: m.hsm.tokenLabel,
      lastShredEpoch: m.lastShredEpoch,
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  },
};
