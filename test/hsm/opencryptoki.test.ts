// The HSM suite against the opencryptoki software token (re-initialised for this run). If
// opencryptoki cannot run here the whole suite is skipped with the reason printed.
import { describe, it } from 'node:test';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { createOpenCryptokiToken, openCryptokiUnavailable } from '../support/opencryptoki-token.ts';
import type { OpenCryptokiToken } from '../support/opencryptoki-token.ts';
import { hsmSuite } from './hsm-suite.ts';

const why = openCryptokiUnavailable();
if (why) {
  describe('Hsm on opencryptoki', () => {
    it('cannot run here', (t) => t.skip(why));
  });
} else {
  let token: OpenCryptokiToken | undefined;
  hsmSuite('opencryptoki', {
    open: async () => {
      token = createOpenCryptokiToken('kb-hsm-suite');
      return { profile: loadProfile('opencryptoki'), pin: token.pin, tokenLabel: token.label };
    },
    cleanup: () => token?.cleanup(),
  });
}
