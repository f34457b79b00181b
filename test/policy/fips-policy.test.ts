// FIPS mode algorithm table: approved, refused, composites, aliases, unknown names.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { assertFipsAlgorithm, fipsRefusal } from '../../daemon/src/policy/fips-policy.ts';

const allowed = [
  'AES-256-GCM',
  'aes_256_gcm',
  'HKDF-SHA256',
  'HMAC-SHA256',
  'HMAC-SHA512',
  'ECDSA-P256',
  'es256',
  'ML-KEM-768',
  'ML-KEM-1024',
  'ML-DSA-44',
  'ML-DSA-65',
  'ML-DSA-87',
  'ML-DSA-65+ECDSA-P256',
  'HKDF-SHA256+AES-256-GCM',
];
const refused: [string, RegExp][] = [
  ['ChaCha20-Poly1305', /ChaCha20-Poly1305 is not FIPS-approved/],
  ['XChaCha20-Poly1305', /not FIPS-approved/],
  ['X25519', /X25519 is not FIPS-approved/],
  ['X-Wing', /X-Wing contains X25519/],
  ['xwing', /X-Wing contains X25519/],
  ['Ed25519', /Ed25519/],
  ['ML-KEM-768+X25519', /X25519/],
  ['ML-DSA-65+Ed25519', /Ed25519/],
  ['MD5', /md5 is not on the FIPS-approved list/],
  ['', /malformed/],
  ['ML-DSA-65+', /malformed/],
];

describe('FIPS algorithm policy', () => {
  for (const a of allowed) it(`allows ${a}`, () => assert.equal(fipsRefusal(a), undefined));
  for (const [a, why] of refused) {
    it(`refuses ${JSON.stringify(a)}`, () => {
      assert.match(fipsRefusal(a) ?? 'ALLOWED', why);
      assert.throws(
        () => assertFipsAlgorithm(a),
        (e: unknown) => e instanceof KbError && e.code === 'ALGORITHM_NOT_ALLOWED' && e.status === 9,
      );
    });
  }
});
