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

// The same suite with AES-GCM on the libuv C_*Async path (gcmPath option) instead of the worker
// thread, so both GCM paths get the round trips and the tamper loop. The first suite's close
// finalises the module, so this token's SOFTHSM2_CONF is read at the next C_Initialize.
let uvToken: TestToken | undefined;
hsmSuite('softhsm2 (GCM via C_*Async)', {
  open: async () => {
    uvToken = createTestToken('kb-hsm-suite-uv');
    return {
      profile: loadProfile('softhsm2'),
      pin: uvToken.pin,
      tokenLabel: uvToken.label,
      workerThread: false,
    };
  },
  cleanup: () => uvToken?.cleanup(),
});
