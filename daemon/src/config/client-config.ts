/**
 * Where a CLI client finds the daemon and its credentials: explicit flags first, else the data
 * dir made by `keybroker init` (its config, the ready file with the bound port, its pki/ files).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig } from './load-config.ts';

export interface ClientFlags {
  readonly dataDir?: string;
  readonly addr?: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Which identity of the data dir to use when --cert/--key are not given. */
  readonly as: 'admin' | 'service';
}

export interface ClientConfig {
  readonly address: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Shared yargs options of every client command (re-exported for existing importers). */
export { CLIENT_OPTIONS } from './client-options.ts';

export function resolveClientConfig(f: ClientFlags, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const dir = resolve(f.dataDir ?? '.data');
  const pki = join(dir, 'pki');
  let address = f.addr;
  if (address === undefined) {
    const cfgFile = join(dir, 'keybroker.json');
    if (!existsSync(cfgFile))
      throw new ConfigError(`--addr not given and no ${cfgFile} (run keybroker init)`);
    const cfg = loadConfig(cfgFile, env);
    address = `${cfg.listen.host}:${cfg.listen.port}`;
    if (cfg.lifecycle.readyFile !== '' && existsSync(cfg.lifecycle.readyFile)) {
      const ready = JSON.parse(readFileSync(cfg.lifecycle.readyFile, 'utf8')) as { grpc?: string };
      if (typeof ready.grpc === 'string') address = ready.grpc;
    }
  }
  if ((f.cert === undefined) !== (f.key === undefined)) throw new ConfigError('--cert and --key go together');
  return {
    address,
    caFile: f.ca ?? join(pki, 'ca.pem'),
    certFile: f.cert ?? join(pki, `${f.as}.pem`),
    keyFile: f.key ?? join(pki, `${f.as}-key.pem`),
  };
}
