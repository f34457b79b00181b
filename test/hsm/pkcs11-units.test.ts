// Pure helpers of the HSM layer: CKR classification and KbError mapping, ECDSA r||s -> DER.
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import pkcs11js from 'pkcs11js';
import { ecdsaRawToDer } from '../../daemon/src/hsm/key-encoding.ts';
import { Pkcs11Error, ckrName, toPkcs11Error } from '../../daemon/src/hsm/pkcs11-error.ts';

describe('Pkcs11Error', () => {
  const cases: [string, string, string][] = [
    ['CKR_DEVICE_REMOVED', 'device-unavailable', 'HSM_UNAVAILABLE'],
    ['CKR_TOKEN_NOT_PRESENT', 'device-unavailable', 'HSM_UNAVAILABLE'],
    ['CKR_SESSION_HANDLE_INVALID', 'device-unavailable', 'HSM_UNAVAILABLE'],
    ['CKR_CRYPTOKI_NOT_INITIALIZED', 'device-unavailable', 'HSM_UNAVAILABLE'],
    ['CKR_PIN_INCORRECT', 'locked', 'HSM_UNAVAILABLE'],
    ['CKR_PIN_LOCKED', 'locked', 'HSM_UNAVAILABLE'],
    ['CKR_OBJECT_HANDLE_INVALID', 'not-found', 'NOT_FOUND'],
    ['CKR_WRAPPED_KEY_INVALID', 'invalid-input', 'INVALID_ARGUMENT'],
    ['CKR_MECHANISM_INVALID', 'invalid-input', 'INVALID_ARGUMENT'],
    ['CKR_GENERAL_ERROR', 'internal', 'INTERNAL'],
    ['CKR_HOST_MEMORY', 'internal', 'INTERNAL'],
  ];
  for (const [ckr, kind, code] of cases) {
    it(`${ckr} is ${kind} and reaches callers as ${code}`, () => {
      const e = new Pkcs11Error(ckr, 0, 'C_Test');
      assert.equal(e.kind, kind);
      const kb = e.toKbError();
      assert.equal(kb.code, code);
      assert.equal(kb.detail, `C_Test failed: ${ckr}`, 'CKR name and function go to the log detail');
    });
  }

  it('names codes and wraps pkcs11js errors with the function', () => {
    assert.equal(ckrName(pkcs11js.CKR_GENERAL_ERROR), 'CKR_GENERAL_ERROR');
    assert.equal(ckrName(0x80000001), 'CKR_0x80000001');
    const native = new pkcs11js.Pkcs11Error('CKR_DEVICE_REMOVED:50', pkcs11js.CKR_DEVICE_REMOVED, 'x');
    const wrapped = toPkcs11Error(native, 'C_Encrypt');
    assert.ok(wrapped instanceof Pkcs11Error);
    assert.equal(wrapped.ckr, 'CKR_DEVICE_REMOVED');
    assert.equal(wrapped.fn, 'C_Encrypt');
    assert.equal(wrapped.kind, 'device-unavailable');
    const plain = new TypeError('not a pkcs11 error');
    assert.equal(toPkcs11Error(plain, 'C_Encrypt'), plain);
  });
});

describe('ecdsaRawToDer', () => {
  for (const [curve, len] of [
    ['P-256', 64],
    ['P-384', 96],
    ['P-521', 132],
  ] as const) {
    it(`converts ${curve} r||s signatures that Node crypto then verifies (200 signatures)`, () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      for (let i = 0; i < 200; i++) {
        const msg = Buffer.from(`message ${i}`);
        const raw = sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        assert.equal(raw.length, len);
        const der = ecdsaRawToDer(raw);
        assert.ok(verify('sha256', msg, publicKey, der), `DER of signature ${i} did not verify`);
      }
    });
  }

  it('keeps high-bit and leading-zero integers canonical', () => {
    const raw = Buffer.concat([Buffer.alloc(32, 0xff), Buffer.concat([Buffer.alloc(31, 0), Buffer.of(1)])]);
    const der = ecdsaRawToDer(raw);
    assert.equal(der.toString('hex'), `3026022100${'ff'.repeat(32)}020101`);
  });

  for (const n of [0, 63, 134]) {
    it(`refuses ${n} bytes`, () => assert.throws(() => ecdsaRawToDer(Buffer.alloc(n, 1))));
  }
});
