/**
 * Every engine entry point fed mangled input (wrong type, empty, one byte short/long, unknown
 * algorithm, key from the other engine): always KbError INVALID_ARGUMENT whose message names the
 * parameter — never a raw library error, never key bytes in the message.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { MAX_ENCAPSULATIONS, type PqcEngine } from '../../daemon/src/pqc/pqc-engine.ts';
import { ENGINES } from './engines.ts';

function other(e: PqcEngine): PqcEngine {
  return ENGINES.find((x) => x !== e)!;
}

describe('mangled inputs', () => {
  for (const e of ENGINES) {
    const kem = ENGINES[0]!.generateKeyPair('ml-kem-768');
    const dsa = ENGINES[0]!.generateKeyPair('ml-dsa-65');
    const kemKey = e.loadPrivateKey('ml-kem-768', 'expanded', kem.secretKey.expose(), kem.publicKey);
    const dsaKey = e.loadPrivateKey('ml-dsa-65', 'expanded', dsa.secretKey.expose(), dsa.publicKey);
    const foreign = other(e).loadPrivateKey('ml-dsa-65', 'expanded', dsa.secretKey.expose(), dsa.publicKey);
    const msg = new Uint8Array(4);
    const sig = new Uint8Array(3309);
    const cases: [string, string, () => unknown][] = [
      ['generateKeyPair alg unknown', 'alg', () => e.generateKeyPair('rsa-2048' as never)],
      [
        'loadPrivateKey form unknown',
        'form',
        () => e.loadPrivateKey('ml-kem-768', 'pem' as never, new Uint8Array(64)),
      ],
      [
        'loadPrivateKey expanded 1 B short',
        'secretKey',
        () => e.loadPrivateKey('ml-kem-768', 'expanded', new Uint8Array(2399)),
      ],
      [
        'loadPrivateKey expanded as string',
        'secretKey',
        () => e.loadPrivateKey('ml-dsa-65', 'expanded', 'x' as never, dsa.publicKey),
      ],
      [
        'loadPrivateKey mismatched publicKey',
        'publicKey',
        () => e.loadPrivateKey('ml-kem-768', 'expanded', kem.secretKey.expose(), new Uint8Array(1184)),
      ],
      ['encapsulate publicKey empty', 'publicKey', () => e.encapsulate('ml-kem-768', new Uint8Array(0))],
      [
        'encapsulate publicKey 1 B long',
        'publicKey',
        () => e.encapsulate('ml-kem-768', new Uint8Array(1185)),
      ],
      ['encapsulate publicKey as array', 'publicKey', () => e.encapsulate('ml-kem-768', [1, 2] as never)],
      ['encapsulate with a signature alg', 'alg', () => e.encapsulate('ml-dsa-65' as never, kem.publicKey)],
      ['encapsulateMany count -1', 'count', () => e.encapsulateMany('ml-kem-768', kem.publicKey, -1)],
      ['encapsulateMany count 1.5', 'count', () => e.encapsulateMany('ml-kem-768', kem.publicKey, 1.5)],
      [
        'encapsulateMany count over the bound',
        'count',
        () => e.encapsulateMany('ml-kem-768', kem.publicKey, MAX_ENCAPSULATIONS + 1),
      ],
      [
        'encapsulateMany count as string',
        'count',
        () => e.encapsulateMany('ml-kem-768', kem.publicKey, '2' as never),
      ],
      [
        'encapsulateMany publicKey 1 B long',
        'publicKey',
        () => e.encapsulateMany('ml-kem-768', new Uint8Array(1185), 2),
      ],
      ['decapsulate cipherText 1 B short', 'cipherText', () => e.decapsulate(kemKey, new Uint8Array(1087))],
      ['decapsulate with an ML-DSA key', 'key', () => e.decapsulate(dsaKey, new Uint8Array(1088))],
      ['sign with an ML-KEM key', 'key', () => e.sign(kemKey, msg)],
      ['sign with the other engine key', 'key', () => e.sign(foreign, msg)],
      ['sign message not bytes', 'message', () => e.sign(dsaKey, null as never)],
      ['sign context 256 B', 'context', () => e.sign(dsaKey, msg, new Uint8Array(256))],
      [
        'verify publicKey 1 B short',
        'publicKey',
        () => e.verify('ml-dsa-65', new Uint8Array(1951), msg, sig),
      ],
      [
        'verify signature not bytes',
        'signature',
        () => e.verify('ml-dsa-65', dsa.publicKey, msg, 'sig' as never),
      ],
      [
        'verify context 256 B',
        'context',
        () => e.verify('ml-dsa-65', dsa.publicKey, msg, sig, new Uint8Array(256)),
      ],
    ];
    for (const [name, param, fn] of cases) {
      it(`${e.name}: ${name} -> INVALID_ARGUMENT naming ${param}`, () => {
        assert.throws(fn, (err: unknown) => {
          assert.ok(err instanceof KbError, `wanted KbError, got ${String(err)}`);
          assert.equal(err.code, 'INVALID_ARGUMENT', err.message);
          assert.ok(err.message.includes(param), `message "${err.message}" should name ${param}`);
          assert.ok(!/[0-9a-f]{32}/i.test(err.message), 'message must not carry key bytes');
          return true;
        });
      });
    }
    it(`${e.name}: wrong-length signatures verify false rather than throw`, () => {
      assert.equal(e.verify('ml-dsa-65', dsa.publicKey, msg, new Uint8Array(3308)), false);
      assert.equal(e.verify('ml-dsa-65', dsa.publicKey, msg, new Uint8Array(0)), false);
    });
    it(`${e.name}: a destroyed key cannot be used`, () => {
      const k = e.loadPrivateKey('ml-dsa-65', 'expanded', dsa.secretKey.expose(), dsa.publicKey);
      k.destroy();
      assert.throws(() => e.sign(k, msg));
    });
  }
});
