/**
 * Identity hygiene over real gRPC + mTLS (issue 18 item 4, review M7/L1): the clientAuth EKU is
 * required; a certificate that expires while its connection is open is refused on its next call;
 * a serial added to tls.crlFile and a SIGHUP is refused at once, on fresh and on already-open
 * connections, while other certificates keep working; a CRL signed by a foreign CA is refused.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createDevCa, loadDevCa } from '../../daemon/src/tls/dev-pki.ts';
import type { DevCa, PemPair } from '../../daemon/src/tls/dev-pki.ts';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let ca: DevCa;
let crlFile: string;

before(async () => {
  const dir = await initTestDataDir();
  ca = await loadDevCa(
    (await import('node:fs')).readFileSync(join(dir, 'pki/ca.pem'), 'utf8'),
    (await import('node:fs')).readFileSync(join(dir, 'pki/ca-key.pem'), 'utf8'),
  );
  crlFile = join(dir, 'pki/crl.pem');
  writeFileSync(crlFile, await ca.crl([]));
  d = await startDaemon({ dataDir: dir, env: { KB_TLS_CRL_FILE: crlFile } });
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const encrypt = (c: KeybrokerClient) =>
  c.crypto.unary<R>('Encrypt', { plaintext: Buffer.from('hello'), aad: Buffer.alloc(0) });
const serialOf = (p: PemPair) => new X509Certificate(p.certPem).serialNumber;
const issue = (o: Partial<Parameters<DevCa['issue']>[0]> = {}) =>
  ca.issue({ commonName: 'svc', uris: ['spiffe://acme/alpha/app'], usage: 'client', ...o });

/** SIGHUP and wait for the n-th outcome line of a reload. */
async function reload(): Promise<string> {
  const seen = d.lines.filter(
    (l) =>
      l.msg === 'reloaded config and TLS certificates' ||
      l.msg === 'reload failed; keeping the previous config',
  ).length;
  d.proc.kill('SIGHUP');
  const end = Date.now() + 20_000;
  for (;;) {
    const outcomes = d.lines.filter(
      (l) =>
        l.msg === 'reloaded config and TLS certificates' ||
        l.msg === 'reload failed; keeping the previous config',
    );
    if (outcomes.length > seen) return String(outcomes[outcomes.length - 1]?.msg);
    if (Date.now() > end) throw new Error(`no reload outcome; output:\n${d.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('the CRL file is loaded at start and checked in the handshake (the bundle has one CA)', async () => {
  const line = await d.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('CRLs loaded'));
  assert.equal(line.inHandshake, true, `CRL in the handshake: ${JSON.stringify(line)}`);
});

test('clientAuth EKU required: no EKU -> UNAUTHENTICATED naming it; serverAuth only -> refused', async () => {
  const noEku = await issue({ usage: 'none' });
  const e = await expectCode(encrypt(d.client(noEku)), GrpcCode.UNAUTHENTICATED, 'certificate without EKU');
  assert.match(e.details, /clientAuth extended key usage/, 'message names the missing EKU');
  const logged = await d.waitFor(
    (l) => l.msg === 'client certificate refused' && /clientAuth/.test(String(l.err)),
  );
  assert.match(String(logged.detail), /extended key usage: none/, 'the log says what the certificate had');
  // OpenSSL's client purpose check refuses a present EKU without clientAuth in the handshake.
  const serverOnly = await issue({ usage: 'server' });
  await expectCode(encrypt(d.client(serverOnly)), GrpcCode.UNAVAILABLE, 'serverAuth-only certificate');
  // The same identity with clientAuth works: the EKU is what was refused.
  assert.ok((await encrypt(d.client(await issue()))).ciphertext, 'clientAuth certificate works');
});

test('a certificate that expires during an open connection is refused on its next call', async () => {
  const shortLived = await issue({ notAfter: new Date(Date.now() + 4000) });
  const c = d.client(shortLived);
  assert.ok((await encrypt(c)).ciphertext, 'works before notAfter');
  const notAfter = new X509Certificate(shortLived.certPem).validToDate.getTime();
  await new Promise((r) => setTimeout(r, Math.max(0, notAfter - Date.now()) + 1200));
  const e = await expectCode(encrypt(c), GrpcCode.UNAUTHENTICATED, 'same channel after notAfter');
  assert.match(e.details, /expired/, 'message says expired');
});

test('revoked serial + SIGHUP: refused on open and fresh connections, others keep working', async () => {
  const victim = await issue();
  const bystander = await issue();
  const openVictim = d.client(victim);
  const openBystander = d.client(bystander);
  assert.ok((await encrypt(openVictim)).ciphertext, 'victim works before revocation');
  assert.ok((await encrypt(openBystander)).ciphertext, 'bystander works before revocation');

  writeFileSync(crlFile, await ca.crl([serialOf(victim)]));
  assert.equal(await reload(), 'reloaded config and TLS certificates', 'reload outcome');

  const e = await expectCode(
    encrypt(openVictim),
    GrpcCode.UNAUTHENTICATED,
    'revoked, already-open connection',
  );
  assert.match(e.details, /revoked/, 'message says revoked');
  // Fresh connection: the CRL is in the handshake (every CA of the bundle has one).
  await expectCode(encrypt(d.client(victim)), GrpcCode.UNAVAILABLE, 'revoked, fresh connection');
  assert.ok((await encrypt(openBystander)).ciphertext, 'bystander on its open connection');
  assert.ok((await encrypt(d.client(bystander))).ciphertext, 'bystander on a fresh connection');
  assert.ok((await encrypt(d.client('service'))).ciphertext, 'init service identity');
});

test('a CRL signed by a foreign CA (same name) is refused on reload; the previous list stays', async () => {
  const victim = await issue();
  writeFileSync(crlFile, await ca.crl([serialOf(victim)]));
  assert.equal(await reload(), 'reloaded config and TLS certificates', 'genuine CRL loads');
  const foreign = await createDevCa('keybroker dev CA');
  writeFileSync(crlFile, await foreign.crl([]));
  assert.equal(await reload(), 'reload failed; keeping the previous config', 'foreign CRL refused');
  const failed = d.lines.filter((l) => l.msg === 'reload failed; keeping the previous config').at(-1);
  assert.match(String(failed?.err), /not signed by any CA of tls\.caFile/, 'reload error names the cause');
  await expectCode(encrypt(d.client(victim)), GrpcCode.UNAVAILABLE, 'still revoked after the refused reload');
  assert.ok((await encrypt(d.client('service'))).ciphertext, 'others still work');
});
