// The HSM going away at runtime and coming back, on real SoftHSM2: the test fault switch, and a
// real fault (the token directory moved away, then back). In-flight and later callers get
// HSM_UNAVAILABLE, never a crash or another error; health() says so; reconnect re-initialises.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import type { HsmLogger } from '../../daemon/src/hsm/pkcs11-connection.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import { createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';
import { rejectsWith } from './hsm-suite.ts';

interface LogLine {
  level: string;
  msg: string;
  obj: object;
}

// Runs first, while no other instance holds the module: a second instance in the same process
// would share the first one's login, and C_Login then answers CKR_USER_ALREADY_LOGGED_IN.
describe('Pkcs11Hsm.open failures (SoftHSM2)', () => {
  let failToken: TestToken;
  before(() => {
    failToken = createTestToken('kb-open-fail');
  });
  after(() => failToken?.cleanup());

  it('open() with a wrong PIN fails with HSM_UNAVAILABLE and never shows the PIN', async () => {
    const wrong = 'not-the-pin-7f3a';
    try {
      await Pkcs11Hsm.open({ profile: loadProfile('softhsm2'), pin: wrong, tokenLabel: failToken.label });
      assert.fail('open with a wrong PIN succeeded');
    } catch (err) {
      assert.ok(err instanceof KbError, String(err));
      assert.equal(err.code, 'HSM_UNAVAILABLE');
      assert.match(err.message, /CKR_PIN_INCORRECT/);
      const all = `${err.message} ${err.detail ?? ''} ${String(err.cause)} ${JSON.stringify(err)}`;
      assert.ok(!all.includes(wrong), 'the PIN leaked into the error');
    }
  });

  it('open() of an absent token fails with HSM_UNAVAILABLE naming it as not found', async () => {
    await rejectsWith(
      Pkcs11Hsm.open({ profile: loadProfile('softhsm2'), pin: failToken.pin, tokenLabel: 'no-such-token' }),
      'HSM_UNAVAILABLE',
      'open(absent token)',
    );
  });
});

describe('Pkcs11Hsm reconnect (SoftHSM2)', () => {
  let token: TestToken;
  let hsm: Pkcs11Hsm;
  const lines: LogLine[] = [];
  const logger: HsmLogger = {
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
  };

  before(async () => {
    token = createTestToken('kb-reconnect');
    hsm = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
      logger,
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 200,
      probeIntervalMs: 100,
    });
  });
  after(async () => {
    await hsm?.close();
    token?.cleanup();
  });

  it('fault switch: in-flight and new calls get HSM_UNAVAILABLE, health reports it, then it recovers', async () => {
    const root = await hsm.generateRootKey('rc-fault', { gcm: true });
    const key = randomBytes(32);
    const wrapped = await hsm.wrapKey(root, key);
    const inFlight = Array.from({ length: 200 }, (_, i) =>
      i % 2 ? hsm.unwrapKey(root, wrapped) : hsm.wrapKey(root, key),
    );
    hsm.setFaultInjection(true);
    const settled = await Promise.allSettled(inFlight);
    assert.ok(
      settled.some((r) => r.status === 'rejected'),
      'the fault switch went on while 200 calls were queued: some must fail',
    );
    for (const r of settled) {
      if (r.status === 'rejected') {
        assert.ok(r.reason instanceof KbError, `in-flight rejection ${String(r.reason)}`);
        assert.equal(r.reason.code, 'HSM_UNAVAILABLE', `in-flight call got ${r.reason.code}`);
      }
    }
    for (const [what, call] of [
      ['wrapKey', () => hsm.wrapKey(root, key)],
      ['unwrapKey', () => hsm.unwrapKey(root, wrapped)],
      ['encryptGcm', () => hsm.encryptGcm(root, key, key)],
      ['findKey', () => hsm.findKey('rc-fault', 'root')],
      ['generateRandom', () => hsm.generateRandom(8)],
    ] as const) {
      await rejectsWith(call(), 'HSM_UNAVAILABLE', `${what} during the fault`);
    }
    const down = hsm.health();
    assert.equal(down.ok, false);
    assert.match(
      down.reason ?? '',
      /device unavailable|CKR_DEVICE_REMOVED/,
      `health().reason = ${down.reason}`,
    );
    hsm.setFaultInjection(false);
    await hsm.whenHealthy(10_000);
    assert.equal(hsm.health().ok, true);
    assert.deepEqual(
      Buffer.from(await hsm.unwrapKey(root, wrapped)),
      key,
      'old wrap unwraps after reconnect',
    );
    assert.ok(
      lines.some((l) => l.msg === 'HSM reconnected'),
      'reconnect was logged',
    );
    assert.ok(!JSON.stringify(lines).includes(token.pin), 'the PIN appeared in a log line');
  });

  it('real fault: token directory moved away is detected, and recovered from when it returns', async () => {
    const root = await hsm.generateRootKey('rc-real');
    const key = randomBytes(32);
    const wrapped = await hsm.wrapKey(root, key);
    const tokens = `${token.dir}/tokens`;
    renameSync(tokens, `${tokens}.away`);
    try {
      // SoftHSM reports the loss only as invalid handles / CKR_GENERAL_ERROR; the probe after such
      // a failure turns it into "device unavailable".
      await rejectsWith(hsm.wrapKey(root, key), 'HSM_UNAVAILABLE', 'wrapKey with the token dir gone');
      await rejectsWith(hsm.unwrapKey(root, wrapped), 'HSM_UNAVAILABLE', 'unwrapKey with the token dir gone');
      assert.equal(hsm.health().ok, false, `health() = ${JSON.stringify(hsm.health())}`);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(hsm.health().ok, false, 'must stay down while the token is away');
      await rejectsWith(hsm.generateRandom(8), 'HSM_UNAVAILABLE', 'generateRandom while away');
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    await hsm.whenHealthy(10_000);
    assert.deepEqual(Buffer.from(await hsm.unwrapKey(root, wrapped)), key, 'unwrap after the token returned');
    assert.deepEqual(await hsm.findKey('rc-real', 'root'), root);
  });

  it('real fault under 1,000 in-flight calls: each succeeds or gets HSM_UNAVAILABLE, then recovery', async () => {
    const root = await hsm.generateRootKey('rc-load', { gcm: true });
    const key = randomBytes(32);
    const wrapped = await hsm.wrapKey(root, key);
    const tokens = `${token.dir}/tokens`;
    const calls = Array.from({ length: 1000 }, (_, i) =>
      (i % 2 ? hsm.unwrapKey(root, wrapped) : hsm.encryptGcm(root, key, key)).then(
        () => 'ok',
        (e: unknown) => (e instanceof KbError ? e.code : `non-KbError ${String(e)}`),
      ),
    );
    const moved = new Promise<void>((resolve) =>
      setImmediate(() => {
        renameSync(tokens, `${tokens}.away`);
        resolve();
      }),
    );
    const codes = new Set(await Promise.all(calls));
    await moved;
    try {
      codes.delete('ok');
      codes.delete('HSM_UNAVAILABLE');
      assert.deepEqual([...codes], [], 'only ok or HSM_UNAVAILABLE while the token vanishes');
      await rejectsWith(
        hsm.unwrapKey(root, wrapped),
        'HSM_UNAVAILABLE',
        'unwrapKey after the token vanished',
      );
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    await hsm.whenHealthy(10_000);
    assert.deepEqual(Buffer.from(await hsm.unwrapKey(root, wrapped)), key);
  });

  it('the idle probe notices a vanished token without any traffic', async () => {
    const tokens = `${token.dir}/tokens`;
    renameSync(tokens, `${tokens}.away`);
    try {
      const deadline = Date.now() + 10_000;
      while (hsm.health().ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(hsm.health().ok, false, 'probe did not notice the token going away');
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    await hsm.whenHealthy(10_000);
    assert.equal((await hsm.generateRandom(8)).length, 8);
  });

  it('close() rejects later calls with SHUTTING_DOWN', async () => {
    const short = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
    });
    await short.close();
    await rejectsWith(short.generateRandom(8), 'SHUTTING_DOWN', 'generateRandom after close');
    assert.equal((await hsm.generateRandom(8)).length, 8, 'the other instance still works');
  });
});
