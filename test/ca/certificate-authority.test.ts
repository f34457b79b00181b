/**
 * The org CA below the API, on a real SoftHSM2 token: ML-DSA-65 seeds wrapped by the HSM refuse
 * every tampered byte and bit (one unwrap path, one outcome), a key that is not the certificate's
 * is refused, a broken generation is left out without taking the others down, revocations are
 * keyed by issuer and drop out of the CRL set once expired, issued certificates carry exactly
 * the template (clientAuth, one URI, no CA flag, AKI = CA SKI).
 */
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../../daemon/src/ca/certificate-authority.ts';
import { CertificateStore } from '../../daemon/src/ca/certificate-store.ts';
import type { CaRow } from '../../daemon/src/ca/certificate-store.ts';
import { OrgCa } from '../../daemon/src/ca/org-ca.ts';
import { KbError } from '../../daemon/src/errors.ts';
import type { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import { revocationKey } from '../../daemon/src/tls/revocation-set.ts';
import { openTestHsm } from '../support/softhsm-token.ts';

let hsm: Pkcs11Hsm;
let closeHsm: () => Promise<void>;
const dir = mkdtempSync(join(tmpdir(), 'kb-ca-'));
let now = new Date();

before(async () => {
  ({ hsm, close: closeHsm } = await openTestHsm('kb-ca-test'));
});
after(async () => {
  await closeHsm();
  rmSync(dir, { recursive: true, force: true });
});

async function spki(): Promise<Uint8Array> {
  const k = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return new Uint8Array(await webcrypto.subtle.exportKey('spki', k.publicKey));
}

test('issued certificates: clientAuth only, one URI, no CA flag, AKI = CA SKI, verifies', async () => {
  const ca = await CertificateAuthority.open({ hsm, dataDir: dir, now: () => now });
  try {
    for (const [org, alg] of [
      ['acme', 'ecdsa-p256'],
      ['pq', 'mldsa65'],
    ] as const) {
      const gen = await ca.createCa(org, alg);
      const caCert = new X509Certificate(gen.certPem);
      assert.ok(caCert.ca, `${org}: CA flag on the CA`);
      const r = await ca.issue({
        org,
        uri: `spiffe://${org}/alpha/app`,
        commonName: 'app',
        spki: await spki(),
        keyAlgorithm: 'ecdsa-p256',
        lifetimeMs: 3_600_000,
        issuedBy: 'test',
      });
      const leaf = new X509Certificate(r.certPem);
      assert.equal(leaf.ca, false, `${org}: no CA flag`);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2'], `${org}: clientAuth only`);
      assert.equal(leaf.subjectAltName, `URI:spiffe://${org}/alpha/app`, `${org}: one URI`);
      assert.ok(leaf.verify(caCert.publicKey), `${org}: signature`);
      assert.ok(leaf.checkIssued(caCert), `${org}: issued by the CA (names and key ids)`);
      assert.equal(leaf.serialNumber.length, 30, `${org}: 30 hex digits (audit-safe length)`);
      assert.ok(
        Math.abs(leaf.validToDate.getTime() - (now.getTime() + 3_600_000)) < 1000,
        `${org}: lifetime`,
      );
    }
  } finally {
    ca.close();
  }
});

test('revocations are keyed by issuer and drop out once the certificate expired', async () => {
  const ca = await CertificateAuthority.open({ hsm, dataDir: dir, now: () => now });
  try {
    const r = await ca.issue({
      org: 'acme',
      uri: 'spiffe://acme/alpha/app',
      commonName: 'app',
      spki: await spki(),
      keyAlgorithm: 'ecdsa-p256',
      lifetimeMs: 60_000,
      issuedBy: 'test',
    });
    const issuer = new X509Certificate(r.certPem).issuer;
    ca.revoke('acme', r.serial, 'test');
    assert.ok(ca.revokedKeys().has(revocationKey(issuer, r.serial)), 'revoked under its issuer');
    assert.ok(!ca.revokedKeys().has(revocationKey('CN=other', r.serial)), 'not under another issuer');
    assert.throws(() => ca.revoke('pq', r.serial, 'test'), /not found/, 'another org cannot revoke it');
    assert.throws(() => ca.revoke('acme', r.serial, 'test'), /already revoked/, 'twice');
    now = new Date(now.getTime() + 120_000);
    ca.revoke(
      'acme',
      (
        await ca.issue({
          org: 'acme',
          uri: 'spiffe://acme/alpha/x',
          commonName: 'x',
          spki: await spki(),
          keyAlgorithm: 'ecdsa-p256',
          lifetimeMs: 60_000,
          issuedBy: 't',
        })
      ).serial,
      'test',
    );
    assert.ok(!ca.revokedKeys().has(revocationKey(issuer, r.serial)), 'expired: no longer listed');
  } finally {
    ca.close();
  }
});

test('ML-DSA seed unwrap: every flipped bit and every truncation is refused; so is a foreign key', async () => {
  const store = new CertificateStore(join(dir, 'certificates.db'));
  const rows = store.cas();
  store.close();
  const pq = rows.find((r) => r.org === 'pq') as CaRow;
  const wrapped = pq.wrappedSeed as Uint8Array;
  assert.ok((await OrgCa.open(hsm, pq)).generation === 1, 'the genuine row opens');
  const variants: [string, Uint8Array][] = [];
  for (let bit = 0; bit < wrapped.length * 8; bit++) {
    const v = Uint8Array.from(wrapped);
    v[bit >> 3] = (v[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    variants.push([`bit ${bit}`, v]);
  }
  for (let len = 0; len < wrapped.length; len += 4)
    variants.push([`truncated to ${len}`, wrapped.subarray(0, len)]);
  variants.push(['extended', Uint8Array.from([...wrapped, 0])]);
  for (const [name, w] of variants) {
    await assert.rejects(
      OrgCa.open(hsm, { ...pq, wrappedSeed: w }),
      (e: unknown) => e instanceof KbError,
      name,
    );
  }
  // A second generation of the same org (same KEK): its seed under generation 1's certificate.
  const ca = await CertificateAuthority.open({ hsm, dataDir: dir, now: () => now });
  const g2 = await ca.createCa('pq', 'mldsa65');
  ca.close();
  const store2 = new CertificateStore(join(dir, 'certificates.db'));
  const g2row = store2.cas().find((r) => r.org === 'pq' && r.generation === g2.generation) as CaRow;
  store2.close();
  await assert.rejects(
    OrgCa.open(hsm, { ...pq, wrappedSeed: g2row.wrappedSeed }),
    /key does not match its certificate/,
    'seed swapped between generations',
  );
  const acme = rows.find((r) => r.org === 'acme') as CaRow;
  await assert.rejects(
    OrgCa.open(hsm, { ...acme, certPem: pq.certPem, algorithm: 'ecdsa-p256' }),
    /key does not match its certificate/,
    'HSM key under another certificate',
  );
});

test('a generation that cannot be opened is left out and reported; the others work', async () => {
  const store = new CertificateStore(join(dir, 'certificates.db'));
  const acme = store.cas().find((r) => r.org === 'acme') as CaRow;
  store.addCa({ ...acme, org: 'broken', generation: 1, hsmLabel: 'kb-ca-nonexistent' });
  store.close();
  await assert.rejects(
    CertificateAuthority.open({ hsm, dataDir: dir }),
    /not in the HSM/,
    'strict open throws',
  );
  const reported: string[] = [];
  const ca = await CertificateAuthority.open({
    hsm,
    dataDir: dir,
    onOpenError: (org, generation) => reported.push(`${org}/${generation}`),
  });
  try {
    assert.deepEqual(reported, ['broken/1']);
    assert.equal(ca.cas('broken').length, 0, 'not trusted');
    assert.equal(ca.cas('pq').length, 2, 'others open');
    assert.equal(ca.trustedCaPems().length, 3, 'acme g1, pq g1 and g2');
  } finally {
    ca.close();
  }
});
