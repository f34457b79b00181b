/**
 * X-Wing (draft-connolly-cfrg-xwing-kem-08): the three shared vectors on both ML-KEM engines,
 * @noble/post-quantum ml_kem768_x25519 as the oracle (it also reproduces the derandomized
 * encapsulation, which our engines cannot), cross-implementation round trips, and implicit
 * rejection on tampered ciphertexts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { KbError } from '../../daemon/src/errors.ts';
import { XWing } from '../../daemon/src/pqc/xwing.ts';
import { liboqs, openssl } from './engines.ts';
import { eq, hex, readVectorJson } from './vectors.ts';

interface XWingVector {
  seed: string;
  eseed: string;
  pk: string;
  sk: string;
  ct: string;
  ss: string;
}
const vectors = readVectorJson<XWingVector[]>('xwing/test-vectors.json');

const IMPLS = [
  { name: 'openssl', xwing: new XWing(openssl) },
  { name: 'liboqs (seed expanded by openssl)', xwing: new XWing(openssl, liboqs) },
];

describe('X-Wing vectors', () => {
  it('there are three vectors', () => assert.equal(vectors.length, 3));
  for (const { name, xwing } of IMPLS) {
    vectors.forEach((v, i) => {
      it(`vector ${i} on ${name}: keygen(seed) = pk, decapsulate(sk, ct) = ss`, () => {
        const kp = xwing.generateKeyPair(hex(v.seed));
        assert.ok(eq(kp.publicKey, hex(v.pk)), 'generateKeyPair(seed).publicKey differs from pk');
        const key = xwing.loadPrivateKey(hex(v.sk), hex(v.pk));
        assert.ok(eq(xwing.decapsulate(key, hex(v.ct)), hex(v.ss)), 'decapsulate differs from ss');
      });
    });
  }
  vectors.forEach((v, i) => {
    it(`vector ${i} on the oracle @noble/post-quantum (incl. encapsulation from eseed)`, () => {
      const kp = ml_kem768_x25519.keygen(hex(v.seed));
      assert.ok(eq(kp.publicKey, hex(v.pk)));
      const enc = ml_kem768_x25519.encapsulate(hex(v.pk), hex(v.eseed));
      assert.ok(eq(enc.cipherText, hex(v.ct)) && eq(enc.sharedSecret, hex(v.ss)));
    });
  });
});

describe('X-Wing interop and rejection', () => {
  for (const { name, xwing } of IMPLS) {
    it(`${name}: our encapsulation opens with noble, noble's opens with ours`, () => {
      const kp = xwing.generateKeyPair();
      const key = xwing.loadPrivateKey(kp.seed.expose());
      const ours = xwing.encapsulate(kp.publicKey);
      assert.ok(eq(ml_kem768_x25519.decapsulate(ours.cipherText, kp.seed.expose()), ours.sharedSecret));
      const theirs = ml_kem768_x25519.encapsulate(kp.publicKey);
      assert.ok(eq(xwing.decapsulate(key, theirs.cipherText), theirs.sharedSecret));
    });

    it(`${name}: a flipped bit in either half gives a different secret (implicit rejection), never an error`, () => {
      const kp = xwing.generateKeyPair();
      const key = xwing.loadPrivateKey(kp.seed.expose());
      const { cipherText, sharedSecret } = xwing.encapsulate(kp.publicKey);
      for (const bit of [0, 8 * 500 + 3, 8 * 1087 + 7, 8 * 1088, 8 * 1119 + 6]) {
        const bad = Uint8Array.from(cipherText);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        const ss = xwing.decapsulate(key, bad);
        assert.equal(ss.length, 32);
        assert.ok(!eq(ss, sharedSecret), `flipping bit ${bit} still gave the same secret`);
      }
    });
  }

  it('ciphertexts made on one engine open on the other', () => {
    const [a, b] = [IMPLS[0]!.xwing, IMPLS[1]!.xwing];
    const kp = a.generateKeyPair();
    const keyA = a.loadPrivateKey(kp.seed.expose());
    const keyB = b.loadPrivateKey(kp.seed.expose(), kp.publicKey);
    const e1 = a.encapsulate(kp.publicKey);
    assert.ok(eq(b.decapsulate(keyB, e1.cipherText), e1.sharedSecret), 'openssl -> liboqs');
    const e2 = b.encapsulate(kp.publicKey);
    assert.ok(eq(a.decapsulate(keyA, e2.cipherText), e2.sharedSecret), 'liboqs -> openssl');
  });

  it('wrong lengths are INVALID_ARGUMENT naming the parameter', () => {
    const xwing = new XWing(openssl);
    const kp = xwing.generateKeyPair();
    const key = xwing.loadPrivateKey(kp.seed.expose());
    const cases: [string, () => unknown, string][] = [
      ['seed 31 B', () => xwing.loadPrivateKey(new Uint8Array(31)), 'seed'],
      ['publicKey 1215 B', () => xwing.encapsulate(new Uint8Array(1215)), 'publicKey'],
      ['cipherText 1119 B', () => xwing.decapsulate(key, new Uint8Array(1119)), 'cipherText'],
      ['publicKey mismatch', () => xwing.loadPrivateKey(kp.seed.expose(), new Uint8Array(1216)), 'publicKey'],
    ];
    for (const [name, fn, param] of cases) {
      assert.throws(
        fn,
        (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT' && e.message.includes(param),
        name,
      );
    }
  });

  it('refuses an expander engine without keygen from seed', () => {
    assert.throws(
      () => new XWing(liboqs),
      (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION',
    );
  });
});
