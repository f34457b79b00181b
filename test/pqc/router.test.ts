/**
 * PqcRouter: config validation names the bad field; a non-empty ML-DSA context is routed to a
 * context-capable engine (never dropped); stored seeds load on an engine that cannot expand them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import {
  DEFAULT_PQC_ROUTING,
  PqcRouter,
  validatePqcRouting,
  type PqcRoutingConfig,
} from '../../daemon/src/pqc/pqc-router.ts';
import { ENGINES, openssl } from './engines.ts';

const withRoutes = (
  patch: Partial<PqcRoutingConfig['routes']>,
  rest: Partial<PqcRoutingConfig> = {},
): PqcRoutingConfig => ({
  ...DEFAULT_PQC_ROUTING,
  ...rest,
  routes: { ...DEFAULT_PQC_ROUTING.routes, ...patch },
});

describe('pqc router', () => {
  it('the default config is valid and offloads only the slow operations', () => {
    validatePqcRouting(DEFAULT_PQC_ROUTING);
    const r = new PqcRouter(ENGINES);
    assert.ok(r.offloaded('sig.sign') && !r.offloaded('kem.encapsulate'));
  });

  const bad: [string, PqcRoutingConfig, RegExp][] = [
    ['no engines', { ...DEFAULT_PQC_ROUTING, enabled: [] }, /pqc.enabled/],
    [
      'openssl disabled',
      withRoutes(
        { 'sig.verify': 'liboqs', 'kem.encapsulate': 'liboqs', 'kem.decapsulate': 'liboqs' },
        { enabled: ['liboqs'] },
      ),
      /pqc.enabled must include openssl/,
    ],
    [
      'route to a disabled engine',
      withRoutes({ 'sig.sign': 'liboqs' }, { enabled: ['openssl'] }),
      /pqc.routes.sig.sign/,
    ],
    ['keygen on liboqs', withRoutes({ 'kem.keygen': 'liboqs' }), /keygen must be openssl/],
    ['unknown offload op', { ...DEFAULT_PQC_ROUTING, offload: ['sig.sing' as never] }, /pqc.offload/],
  ];
  for (const [name, config, re] of bad) {
    it(`rejects a config with ${name}`, () => {
      assert.throws(
        () => validatePqcRouting(config),
        (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION' && re.test(e.message),
      );
    });
  }

  it('routes a non-empty context to openssl even when signing is routed to liboqs', () => {
    const r = new PqcRouter(ENGINES);
    assert.equal(r.engineFor('sig.sign').name, 'liboqs');
    assert.equal(r.engineFor('sig.sign', new Uint8Array(0)).name, 'liboqs');
    assert.equal(r.engineFor('sig.sign', Uint8Array.of(1)).name, 'openssl');
    assert.equal(r.engineFor('sig.verify', Uint8Array.of(1)).name, 'openssl');
  });

  it('loads a stored seed on liboqs via openssl expansion; signatures verify; context signs on openssl', () => {
    const r = new PqcRouter(ENGINES);
    const kp = openssl.generateKeyPair('ml-dsa-65');
    const msg = new TextEncoder().encode('routed');
    const key = r.loadPrivateKey('sig.sign', 'ml-dsa-65', kp.seed!.expose(), kp.publicKey);
    assert.equal(key.engine, 'liboqs');
    const sig = r.engineFor('sig.sign').sign(key, msg);
    assert.ok(r.verify('ml-dsa-65', kp.publicKey, msg, sig));
    const ctx = Uint8Array.of(7);
    const ctxKey = r.loadPrivateKey('sig.sign', 'ml-dsa-65', kp.seed!.expose(), kp.publicKey, ctx);
    assert.equal(ctxKey.engine, 'openssl');
    assert.ok(
      r.verify('ml-dsa-65', kp.publicKey, msg, r.engineFor('sig.sign', ctx).sign(ctxKey, msg, ctx), ctx),
    );
    assert.throws(
      () => r.loadPrivateKey('kem.decapsulate', 'ml-dsa-65', kp.seed!.expose(), kp.publicKey),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
  });
});
