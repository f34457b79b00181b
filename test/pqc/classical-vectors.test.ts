/**
 * Wycheproof vectors for the classical primitives keybroker's pqc layer uses: ECDSA P-256/SHA-256
 * (DER and IEEE P1363) and Ed25519 verification and X25519 through our helpers; HKDF-SHA256,
 * HMAC-SHA256, AES-256-GCM (96-bit IVs, the only shape we use) and AES key wrap with padding
 * through Node's crypto, the same calls the hierarchy and sealed boxes rely on. These run on
 * OpenSSL only: liboqs implements no classical algorithms.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { ecdsaP256Verify, ed25519Verify } from '../../daemon/src/pqc/classical-signatures.ts';
import { x25519 } from '../../daemon/src/pqc/x25519.ts';
import { Tally, eq, hex, thrown, wycheproof, type WycheproofGroup, type WycheproofTest } from './vectors.ts';

const tallies: Tally[] = [];
after(() => {
  for (const t of tallies) console.log(`[vectors] ${t.summary()}`);
});

/** valid must succeed; invalid must fail; acceptable may do either (counted as passed). */
function run(
  file: string,
  check: (g: WycheproofGroup, t: WycheproofTest) => boolean | 'not-applicable',
): Tally {
  const tally = new Tally(file, 'openssl');
  for (const g of wycheproof(file).testGroups) {
    for (const t of g.tests) {
      let ok = false as boolean | 'not-applicable';
      const err = thrown(() => (ok = check(g, t)));
      if (ok === 'not-applicable') tally.skip('parameter shape keybroker does not use');
      else if (t.result === 'acceptable') tally.pass();
      else if (t.result === 'valid' ? ok === true : ok === false || err !== undefined) tally.pass();
      else tally.fail(t.tcId, `${t.result} vector gave ${err === undefined ? ok : String(err)}`);
    }
  }
  tallies.push(tally);
  return tally;
}

const msg = (t: WycheproofTest): Uint8Array => hex(t['msg']);

describe('Wycheproof classical vectors', () => {
  it('ecdsa_secp256r1_sha256_test (DER) via ecdsaP256Verify, keys as raw points and as SPKI', () => {
    const tally = run('ecdsa_secp256r1_sha256_test', (g, t) => {
      const pub = (g['publicKey'] as { uncompressed: string }).uncompressed;
      const a = ecdsaP256Verify(hex(pub), msg(t), hex(t['sig']), 'der');
      const b = ecdsaP256Verify(hex(g['publicKeyDer']), msg(t), hex(t['sig']), 'der');
      if (a !== b) throw new Error('raw and SPKI keys disagree');
      return a;
    });
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('ecdsa_secp256r1_sha256_p1363_test via ecdsaP256Verify', () => {
    const tally = run('ecdsa_secp256r1_sha256_p1363_test', (g, t) =>
      ecdsaP256Verify(
        hex((g['publicKey'] as { uncompressed: string }).uncompressed),
        msg(t),
        hex(t['sig']),
        'p1363',
      ),
    );
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('ed25519_test via ed25519Verify', () => {
    const tally = run('ed25519_test', (g, t) =>
      ed25519Verify(hex((g['publicKey'] as { pk: string }).pk), msg(t), hex(t['sig'])),
    );
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('x25519_test via x25519 (low-order peers give the all-zero output RFC 7748 defines)', () => {
    const tally = run('x25519_test', (_g, t) =>
      eq(x25519(hex(t['private']), hex(t['public'])), hex(t['shared'])),
    );
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('hkdf_sha256_test via hkdfSync', () => {
    const tally = run('hkdf_sha256_test', (_g, t) => {
      const okm = hkdfSync('sha256', hex(t['ikm']), hex(t['salt']), hex(t['info']), t['size'] as number);
      return eq(new Uint8Array(okm), hex(t['okm']));
    });
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('hmac_sha256_test via createHmac (tags truncated to the group tag size)', () => {
    const tally = run('hmac_sha256_test', (g, t) => {
      const tag = createHmac('sha256', hex(t['key'])).update(msg(t)).digest();
      return eq(tag.subarray(0, (g['tagSize'] as number) / 8), hex(t['tag']));
    });
    assert.deepEqual(tally.failures, [], tally.summary());
  });

  it('aes_gcm_test, 256-bit keys with 96-bit IVs and 128-bit tags', () => {
    const tally = run('aes_gcm_test', (g, t) => {
      if (g['keySize'] !== 256 || g['ivSize'] !== 96 || g['tagSize'] !== 128) return 'not-applicable';
      const d = createDecipheriv('aes-256-gcm', hex(t['key']), hex(t['iv']));
      d.setAAD(hex(t['aad']));
      d.setAuthTag(hex(t['tag']));
      const pt = Buffer.concat([d.update(hex(t['ct'])), d.final()]);
      const c = createCipheriv('aes-256-gcm', hex(t['key']), hex(t['iv']));
      c.setAAD(hex(t['aad']));
      const ct = Buffer.concat([c.update(msg(t)), c.final()]);
      return eq(pt, msg(t)) && eq(ct, hex(t['ct'])) && eq(c.getAuthTag(), hex(t['tag']));
    });
    assert.deepEqual(tally.failures, [], tally.summary());
    assert.ok(tally.passed > 50, tally.summary());
  });

  it('aes_kwp_test (RFC 5649) via id-aesN-wrap-pad', () => {
    const iv = Buffer.from('a65959a6', 'hex');
    const tally = run('aes_kwp_test', (g, t) => {
      const alg = `id-aes${g['keySize'] as number}-wrap-pad`;
      const d = createDecipheriv(alg, hex(t['key']), iv);
      const pt = Buffer.concat([d.update(hex(t['ct'])), d.final()]);
      const c = createCipheriv(alg, hex(t['key']), iv);
      return eq(pt, msg(t)) && eq(Buffer.concat([c.update(msg(t)), c.final()]), hex(t['ct']));
    });
    assert.deepEqual(tally.failures, [], tally.summary());
  });
});
