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
