/**
 * A fresh SoftHSM2 token for one test process: its own config and token dir under a temp dir.
 * SOFTHSM2_CONF is read by the module at C_Initialize, so set it (via `token.env`) before the
 * first Pkcs11Hsm is opened in the process.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface TestToken {
  readonly dir: string;
  readonly conf: string;
  readonly label: string;
  readonly pin: string;
  readonly soPin: string;
  /** Removes the token files. */
  cleanup(): void;
}

export function createTestToken(label = 'kb-test'): TestToken {
  const dir = mkdtempSync(join(tmpdir(), 'kb-softhsm-'));
  const pin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  const conf = execFileSync(join(REPO_ROOT, 'softhsm-fixtures/create-token.sh'), [dir, label, soPin, pin], {
    encoding: 'utf8',
  }).trim();
  process.env.SOFTHSM2_CONF = conf;
  return {
    dir,
    conf,
    label,
    pin,
    soPin,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A fresh token plus a Pkcs11Hsm (softhsm2 profile) logged in to it; `close()` undoes both. */
export async function openTestHsm(
  label = 'kb-test',
  options: { poolSize?: number; reconnectInitialDelayMs?: number } = {},
): Promise<{ hsm: Pkcs11Hsm; token: TestToken; close(): Promise<void> }> {
  const token = createTestToken(label);
  const hsm = await Pkcs11Hsm.open({
    profile: loadProfile('softhsm2'),
    pin: token.pin,
    tokenLabel: token.label,
    ...options,
  });
  return {
    hsm,
    token,
    close: async () => {
      await hsm.close();
      token.cleanup();
    },
  };
}
