/**
 * `keybroker broker-keys write --config F`: create (if absent) the broker's receipt and audit checkpoint
 * keys in the configured HSM and write their public halves into the data dir, for pinning out of
 * band: receipt-key.pem (SPKI) and broker-keys.json (both keys with SHA-256 fingerprints and the
 * broker instance). `keybroker init` runs it; run it yourself after provisioning a real token,
 * with the daemon stopped (it opens the data dir's registry).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { openConfiguredHsm } from './offline-hsm.ts';
import type { BrokerKeys } from '../keys/key-broker-api.ts';

interface Args {
  config: string;
}

/** Open the HSM and the registry of `configFile`; write and return the broker's public keys. */
export async function writeBrokerKeyFiles(configFile: string): Promise<BrokerKeys> {
  const { cfg, hsm } = await openConfiguredHsm(configFile);
  try {
    const [{ hsmCheckpointSigner }, { KeyBroker }] = await Promise.all([
      import('../audit/hsm-checkpoint-signer.ts'),
      import('../keys/key-broker.ts'),
    ]);
    const audit = cfg.audit.enabled ? (await hsmCheckpointSigner(hsm)).publicKeyPem : undefined;
    const kb = await KeyBroker.open({ hsm, dataDir: cfg.dataDir, auditCheckpointKeyPem: () => audit });
    try {
      const keys = await kb.brokerKeys();
      writeFileSync(join(cfg.dataDir, 'receipt-key.pem'), keys.receiptKey.publicKeyPem);
      writeFileSync(join(cfg.dataDir, 'broker-keys.json'), `${JSON.stringify(keys, null, 2)}\n`);
      return keys;
    } finally {
      await kb.close();
    }
  } finally {
    await hsm.close();
  }
}

const writeCommand: CommandModule<object, Args> = {
  command: 'write',
  describe: "write the broker's public keys (receipt-key.pem, broker-keys.json) into the data dir",
  builder: (y) => y.option('config', { type: 'string', demandOption: true, describe: 'keybroker.json' }),
  handler: async (a) => {
    const k = await writeBrokerKeyFiles(a.config);
    process.stdout.write(
      `${JSON.stringify({ receiptKeySha256: k.receiptKey.sha256, auditCheckpointKeySha256: k.auditCheckpointKey?.sha256, brokerInstance: k.brokerInstance }, null, 2)}\n`,
    );
  },
};

export const brokerKeysCommand: CommandModule = {
  command: 'broker-keys <command>',
  describe: "the broker's public keys, for pinning receipts and audit checkpoints",
  builder: (y) => y.command(writeCommand as CommandModule).demandCommand(1),
  handler: () => undefined,
};
