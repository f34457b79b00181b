/**
 * Where a SoftHSM2 token keeps its files, and whether that is inside the broker's data dir. A
 * token directory inside the (backed-up) data dir means a restored backup brings back every
 * destroyed root key and, with the registry and tenant files beside it, every shredded tenant
 * (review H3). `keybroker init` and the systemd layout keep it apart; `keybroker doctor` checks.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { Add, DoctorOptions } from './hsm-doctor.ts';
import { call } from './pkcs11-connection.ts';
import type { Pkcs11Hsm } from './pkcs11-hsm.ts';
import { isSoftwareTokenInfo, isSoftwareTokenProfile } from './software-token.ts';

/** `directories.tokendir` of a SoftHSM2 config file, resolved; undefined if unset or unreadable. */
export function softhsmTokenDir(confPath: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(confPath, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*directories\.tokendir\s*=\s*(.+?)\s*$/.exec(line);
    if (m?.[1] !== undefined) return resolve(dirname(confPath), m[1]);
  }
  return undefined;
}

/** Whether `dir` is `root` or lies under it (symlinks resolved where the paths exist). */
export function isInside(dir: string, root: string): boolean {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  const rel = relative(real(root), real(dir));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * A shred is only as final as the token's own persistence (review H3): warn when the token is a
 * software token (its root keys are files a backup can bring back), and when its directory lies
 * inside the backed-up data dir (a restored backup then undoes every shred).
 */
export function checkShredFinality(hsm: Pkcs11Hsm, o: DoctorOptions, add: Add): void {
  const slot = hsm.connection.slot;
  const info = slot ? call('C_GetTokenInfo', () => hsm.connection.pkcs11.C_GetTokenInfo(slot)) : undefined;
  const soft = isSoftwareTokenProfile(o.profile.name) || (info !== undefined && isSoftwareTokenInfo(info));
  if (soft)
    add(
      'warn',
      'software token',
      `${info?.manufacturerID.trim() ?? o.profile.name} ${info?.model.trim() ?? ''}: the root keys are files ` +
        'on this host; a shred holds only if no backup, snapshot or copy of the token directory taken ' +
        'before it survives (receipts say "softwareToken": true). Use a hardware HSM in production.',
    );
  const conf = o.softhsmConf ?? process.env.SOFTHSM2_CONF;
  const tokenDir = conf !== undefined && conf !== '' ? softhsmTokenDir(conf) : undefined;
  if (tokenDir === undefined || o.dataDir === undefined) return;
  if (isInside(tokenDir, o.dataDir))
    add(
      'warn',
      'token directory',
      `${tokenDir} is inside the data dir ${o.dataDir}: a backup of the data dir carries the root keys, ` +
        'and restoring it undoes every shred since. Move the token outside the data dir and never back it up.',
    );
  else add('pass', 'token directory', `${tokenDir} is outside the data dir ${o.dataDir} (never back it up)`);
}
