/**
 * `keybroker restore DIR --config keybroker.json [--target DATA_DIR]`: restore a backup made by
 * `keybroker backup` into an empty data dir (default: the config's), with the config's HSM token
 * (PIN from its pin file or KB_HSM_PIN, as `serve`). Checks the manifest, every checksum and the
 * token first; prints which tenants were restored and which are unrecoverable because their keys
 * were shredded after the backup (those are marked destroyed and never served). Run it with the
 * daemon stopped, then start the daemon on the restored dir.
 */
import type { CommandModule } from 'yargs';
import { openConfiguredHsm } from './offline-hsm.ts';

interface Args {
  dir: string;
  config: string;
  target: string | undefined;
}

export const restoreCommand: CommandModule<object, Args> = {
  command: 'restore <dir>',
  describe: 'restore a backup into an empty data dir; reports tenants shredded since',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', demandOption: true, describe: 'backup directory' })
      .option('config', {
        type: 'string',
        demandOption: true,
        describe: 'the daemon config (keybroker.json)',
      })
      .option('target', { type: 'string', describe: "data dir to restore into (default: the config's)" }),
  handler: async (a) => {
    const { cfg, hsm } = await openConfiguredHsm(a.config);
    const h = cfg.hsm;
    try {
      const r = await (
        await import('../keys/restore-backup.ts')
      ).restoreBackup({
        backupDir: a.dir,
        dataDir: a.target ?? cfg.dataDir,
        hsm,
        tokenLabel: h.tokenLabel,
      });
      const out = { restored: r.restored, unrecoverable: r.unrecoverable, disabledOrgs: r.disabledOrgs };
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } finally {
      await hsm.close();
    }
  },
};
