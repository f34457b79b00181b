/**
 * Public-key export: SPKI DER/PEM and JWK agree with Node's own export (OpenSSL) for every type
 * Node knows, thumbprints follow RFC 7638, composite/X-Wing encodings are the raw concatenation
 * under their draft OIDs, and the JWKS builder marks signature and KEM keys.
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { parseSpki } from '../../daemon/src/pqc/pqc-der.ts';
import {
  buildJwks,
  jwkThumbprint,
  publicKeyToJwk,
  publicKeyToPem,
  publicKeyToSpki,
  type PublicKeyKind,
} from '../../daemon/src/pqc/public-key-export.ts';
import { XWing } from '../../daemon/src/pqc/xwing.ts';
import { openssl } from './engines.ts';
import { eq } from './vectors.ts';

const raw = (k: KeyObject): Uint8Array => new Uint8Array(k.export({ format: 'raw-public' }));

describe('public key export', () => {
  const nodeTypes: [PublicKeyKind, () => KeyObject][] = [
    ['ml-kem-512', () => generateKeyPairSync('ml-kem-512').publicKey],
    ['ml-kem-768', () => generateKeyPairSync('ml-kem-768').publicKey],
    ['ml-kem-1024', () => generateKeyPairSync('ml-kem-1024').publicKey],
    ['ml-dsa-44', () => generateKeyPairSync('ml-dsa-44').publicKey],
    ['ml-dsa-65', () => generateKeyPairSync('ml-dsa-65').publicKey],
    ['ml-dsa-87', () => generateKeyPairSync('ml-dsa-87').publicKey],
    ['ed25519', () => generateKeyPairSync('ed25519').publicKey],
    ['ecdsa-p256', () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey],
  ];
  for (const [kind, make] of nodeTypes) {
    it(`${kind}: SPKI DER, PEM and JWK equal what Node exports`, () => {
      const key = make();
      const pk = raw(key);
      assert.ok(
        eq(publicKeyToSpki(kind, pk), new Uint8Array(key.export({ format: 'der', type: 'spki' }))),
        'SPKI DER',
      );
      assert.equal(publicKeyToPem(kind, pk), key.export({ format: 'pem', type: 'spki' }), 'PEM');
      const nodeJwk = key.export({ format: 'jwk' }) as Record<string, unknown>;
      assert.deepEqual({ ...publicKeyToJwk(kind, pk) }, nodeJwk, 'JWK');
      assert.ok(
        eq(raw(createPublicKey({ key: publicKeyToJwk(kind, pk) as never, format: 'jwk' })), pk),
        'JWK imports back',
      );
    });
  }

  it('composite and X-Wing: raw key in the BIT STRING under their draft OIDs, JWK kty AKP', () => {
    const xwing = new XWing(openssl).generateKeyPair();
    assert.ok(
      eq(parseSpki(publicKeyToSpki('x-wing', xwing.publicKey), '1.3.6.1.4.1.62253.25722'), xwing.publicKey),
    );
    assert.deepEqual(publicKeyToJwk('x-wing', xwing.publicKey), {
      kty: 'AKP',
      alg: 'X-Wing',
      pub: Buffer.from(xwing.publicKey).toString('base64url'),
    });
    const comp = crypto.getRandomValues(new Uint8Array(2017));
    comp[1952] = 4;
    assert.ok(
      eq(parseSpki(publicKeyToSpki('composite-mldsa65-ecdsa-p256', comp), '1.3.6.1.5.5.7.6.45'), comp),
    );
    assert.equal(publicKeyToJwk('composite-mldsa65-ecdsa-p256', comp).alg, 'ML-DSA-65-ES256');
  });

  it('RFC 7638 thumbprint: the RFC 8037 Appendix A.3 Ed25519 example', () => {
    const jwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' } as const;
    assert.equal(jwkThumbprint(jwk), 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  });

  it('JWKS: kid = thumbprint by default, use sig for signature keys and enc for KEM keys', () => {
    const dsa = generateKeyPairSync('ml-dsa-65').publicKey;
    const kem = generateKeyPairSync('ml-kem-768').publicKey;
    const jwks = buildJwks([
      { kind: 'ml-dsa-65', publicKey: raw(dsa) },
      { kind: 'ml-kem-768', publicKey: raw(kem), kid: 'tenant-kem-v1' },
    ]);
    assert.equal(jwks.keys[0]!.use, 'sig');
    assert.equal(jwks.keys[0]!.kid, jwkThumbprint(publicKeyToJwk('ml-dsa-65', raw(dsa))));
    assert.equal(jwks.keys[1]!.use, 'enc');
    assert.equal(jwks.keys[1]!.kid, 'tenant-kem-v1');
  });

  it('wrong lengths, compressed points and unknown kinds are INVALID_ARGUMENT', () => {
    const bad: [string, () => unknown][] = [
      ['ml-dsa-65 one byte short', () => publicKeyToSpki('ml-dsa-65', new Uint8Array(1951))],
      ['compressed P-256 point', () => publicKeyToJwk('ecdsa-p256', Uint8Array.of(2, ...new Uint8Array(64)))],
      ['unknown kind', () => publicKeyToSpki('rsa' as PublicKeyKind, new Uint8Array(32))],
      ['not bytes', () => publicKeyToPem('ed25519', 'abc' as unknown as Uint8Array)],
    ];
    for (const [name, fn] of bad)
      assert.throws(fn, (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT', name);
  });
});
