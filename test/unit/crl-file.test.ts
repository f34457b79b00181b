/**
 * CRL loading (tls/crl-file.ts): a CRL counts only when a CA of the bundle signed it and it is
 * current; its serials are keyed by issuer; it goes into the TLS handshake only when every CA of
 * the bundle has one (Node turns on CRL_CHECK_ALL for any CRL).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { ConfigError } from '../../daemon/src/config/load-config.ts';
import { loadCrls } from '../../daemon/src/tls/crl-file.ts';
import { createDevCa } from '../../daemon/src/tls/dev-pki.ts';
import { RevocationSet, revocationKey } from '../../daemon/src/tls/revocation-set.ts';

for (const alg of ['ecdsa-p256', 'mldsa65'] as const) {
  test(`loadCrls (${alg}): verified serials keyed by issuer; foreign, expired and garbage CRLs refused`, async () => {
    const ca = await createDevCa('kb test CA', alg);
    const other = await createDevCa('kb other CA', alg);
    const leaf = await ca.issue({ commonName: 'x', uris: ['spiffe://acme/alpha/app'], usage: 'client' });
    const x = new X509Certificate(leaf.certPem);
    // Lower case with a leading zero: how CRLs may spell it; the key normalises.
    const crl = await ca.crl([`00${x.serialNumber.toLowerCase()}`]);

    const one = await loadCrls([crl], [ca.certPem]);
    assert.ok(one.keys.has(revocationKey(x.issuer, x.serialNumber)), 'revoked serial indexed');
    assert.equal(one.keys.size, 1, 'one entry');
    assert.deepEqual(one.tlsCrls, [crl], 'single-CA bundle: CRL goes into the handshake');

    const partial = await loadCrls([crl], [ca.certPem, other.certPem]);
    assert.equal(partial.tlsCrls, undefined, 'a CA without CRL: not in the handshake');
    assert.equal(partial.keys.size, 1, 'but still revoked by the call gate');
    const full = await loadCrls([crl, await other.crl([])], [ca.certPem, other.certPem]);
    assert.equal(full.tlsCrls?.length, 2, 'every CA covered: both in the handshake');

    const sameName = await createDevCa('kb test CA', alg);
    const bad: [string, string, RegExp][] = [
      ['signed by a CA with the same name', await sameName.crl([]), /not signed by any CA of tls\.caFile/],
      ['signed by a CA outside the bundle', await other.crl([]), /not signed by any CA/],
      ['expired', await ca.crl([], -1), /expired at/],
      ['garbage', '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n', /does not parse/],
    ];
    for (const [name, pem, why] of bad) {
      await assert.rejects(
        loadCrls([pem], [ca.certPem]),
        (e: unknown) => e instanceof ConfigError && why.test(e.message),
        name,
      );
    }
  });
}

test('RevocationSet: per-source replace, issuer-scoped serials', () => {
  const s = new RevocationSet();
  s.replace('crlFile', new Set([revocationKey('CN=a', '0A1b')]));
  s.replace('org-ca', new Set([revocationKey('CN=b', 'ff')]));
  assert.equal(s.has('CN=a', 'A1B'), true, 'same serial, other spelling');
  assert.equal(s.has('CN=b', 'A1B'), false, 'same serial under another issuer');
  assert.equal(s.has('CN=b', 'FF'), true, 'second source');
  s.replace('crlFile', new Set());
  assert.equal(s.has('CN=a', 'A1B'), false, 'replaced source no longer revokes');
  assert.deepEqual(s.sizes(), { crlFile: 0, 'org-ca': 1 });
});
