// The HSM suite against real SoftHSM2, on a fresh token made for this test process.
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';
import { hsmSuite } from './hsm-suite.ts';

let token: TestToken | undefined;
hsmSuite('softhsm2', {
  open: async () => {
    token = createTestToken('kb-hsm-suite');
    return { profile: loadProfile('softhsm2'), pin: token.pin, tokenLabel: token.label };
  },
  cleanup: () => token?.cleanup(),
});
