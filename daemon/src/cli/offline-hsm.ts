/**
 * The configured HSM, opened by a CLI command that runs beside (or instead of) the daemon:
 * `broker-keys write`, `restore`. Loaded on first use, like every heavy module of the CLI.
 */
import type { Config } from '../config/config-schema.ts';
import type { Pkcs11Hsm } from '../hsm/pkcs11-hsm.ts';

/** Load `configFile` and open its HSM (no health probe: the command is short-lived). */
export async function openConfiguredHsm(configFile: string): Promise<{ cfg: Config; hsm: Pkcs11Hsm }> {
  const [{ loadConfig, readHsmPin }, { loadProfile }, { Pkcs11Hsm: Hsm }] = await Promise.all([
    import('../config/load-config.ts'),
    import('../hsm/hsm-profile.ts'),
    import('../hsm/pkcs11-hsm.ts'),
  ]);
  const cfg = loadConfig(configFile);
  const h = cfg.hsm;
  // SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize (in open): set it before.
  if (h.softhsmConf !== '') process.env.SOFTHSM2_CONF = h.softhsmConf;
  let profile = loadProfile(h.profile);
  if (h.module !== '') profile = { ...profile, module: { ...profile.module, paths: [h.module] } };
  const hsm = await Hsm.open({ profile, pin: readHsmPin(cfg), tokenLabel: h.tokenLabel, probeIntervalMs: 0 });
  return { cfg, hsm };
}
