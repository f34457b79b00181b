/** Test support: both engines, created once per test process, and the error-code helper. */
import { KbError } from '../../daemon/src/errors.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import type { PqcEngine } from '../../daemon/src/pqc/pqc-engine.ts';

export const openssl = new OpenSslEngine();
export const liboqs = await LiboqsEngine.create();
export const ENGINES: readonly PqcEngine[] = [openssl, liboqs];

/** The KbError code of a thrown value, or 'not-kb-error: <name>' / 'no-throw'. */
export function codeOf(err: unknown): string {
  if (err === undefined) return 'no-throw';
  return err instanceof KbError ? err.code : `not-kb-error: ${(err as Error)?.name ?? typeof err}`;
}
