/**
 * Identity and transport: mTLS only, TLS 1.3 with the hybrid post-quantum group
 * X25519MLKEM768, callers refused without a certificate, with one from another CA, without a
 * spiffe URI; a tenant cannot reach another tenant's data; health checking and reflection work.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { after, before, test } from 'node:test';
import { credentials, loadPackageDefinition, Client } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { createDevCa } from '../../daemon/src/tls/dev-pki.ts';
import { startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;

before(async () => {
  d = await startDaemon();
  await d.client('admin').admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const encrypt = (c: ReturnType<DaemonHandle['client']>) =>
  c.crypto.unary<R>('Encrypt', { plaintext: Buffer.from('hello'), aad: Buffer.alloc(0) });

function tlsProbe(opts: { cert?: Buffer; key?: Buffer; maxVersion?: 'TLSv1.2' | 'TLSv1.3' }) {
  return new Promise<{ protocol: string | null; group: string | undefined; authorized: boolean }>(
    (resolve, reject) => {
      const s = connect({
        host: '127.0.0.1',
        port: d.grpcPort,
        servername: 'localhost',
        ca: readFileSync(d.pki('ca.pem')),
        ALPNProtocols: ['h2'],
        ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      });
      s.once('secureConnect', () => {
        const info = s.getEphemeralKeyInfo() as { name?: string } | null;
        const r = { protocol: s.getProtocol(), group: info?.name, authorized: s.authorized };
        s.end();
        resolve(r);
      });
      s.once('error', reject);
    },
  );
}

test('TLS 1.3 with the hybrid post-quantum key exchange X25519MLKEM768 is negotiated', async () => {
  const r = await tlsProbe({
    cert: readFileSync(d.pki('service.pem')),
    key: readFileSync(d.pki('service-key.pem')),
  });
  assert.equal(r.protocol, 'TLSv1.3', 'negotiated protocol');
  assert.equal(r.group, 'X25519MLKEM768', 'negotiated key-exchange group');
  assert.ok(r.authorized, 'server certificate verifies against the init CA');
});

test('TLS 1.2 is refused', async () => {
  await assert.rejects(
    tlsProbe({
      cert: readFileSync(d.pki('service.pem')),
      key: readFileSync(d.pki('service-key.pem')),
      maxVersion: 'TLSv1.2',
    }),
    'a TLS 1.2 handshake must fail',
  );
});

test('callers without a certificate or with one from another CA are refused', async () => {
  await expectCode(encrypt(d.client(null)), GrpcCode.UNAVAILABLE, 'no client certificate');
  const foreignCa = await createDevCa('foreign CA');
  const foreign = await foreignCa.issue({
    commonName: 'x',
    uris: ['spiffe://acme/alpha/app'],
    usage: 'client',
  });
  await expectCode(encrypt(d.client(foreign)), GrpcCode.UNAVAILABLE, 'certificate from another CA');
});

test('certificates from the right CA without a usable spiffe URI are UNAUTHENTICATED', async () => {
  const ca = await d.ca();
  const cases = [
    { name: 'no URI', uris: [] as string[] },
    { name: 'two URIs', uris: ['spiffe://acme/alpha/app', 'spiffe://acme/beta/app'] },
    { name: 'not spiffe', uris: ['https://acme/alpha/app'] },
    { name: 'too few segments', uris: ['spiffe://acme/alpha'] },
    { name: 'bad characters', uris: ['spiffe://acme/Alpha/app'] },
  ];
  for (const c of cases) {
    const pair = await ca.issue({ commonName: 'x', uris: c.uris, usage: 'client' });
    const e = await expectCode(encrypt(d.client(pair)), GrpcCode.UNAUTHENTICATED, c.name);
    assert.match(e.details, /^unauthenticated/, `${c.name}: message`);
  }
});

test("a tenant cannot decrypt another tenant's ciphertexts or data keys", async () => {
  const alpha = d.client('service');
  const beta = d.client(await d.issueClient('spiffe://acme/beta/app'));
  const ct = await encrypt(alpha);
  const e = await expectCode(
    beta.crypto.unary('Decrypt', { ciphertext: ct.ciphertext, aad: Buffer.alloc(0) }),
    GrpcCode.INVALID_ARGUMENT,
    'beta decrypts alpha ciphertext',
  );
  assert.equal(e.details, 'decryption failed');
  const dk = await alpha.crypto.unary<R>('GenerateDataKey', { aad: Buffer.alloc(0) });
  await expectCode(
    beta.crypto.unary('DecryptDataKey', { wrappedKey: dk.wrappedKey, aad: Buffer.alloc(0) }),
    GrpcCode.INVALID_ARGUMENT,
    'beta unwraps alpha data key',
  );
  await expectCode(
    beta.crypto.unary('Rewrap', { ciphertext: ct.ciphertext, aad: Buffer.alloc(0) }),
    GrpcCode.INVALID_ARGUMENT,
    'beta rewraps alpha ciphertext',
  );
  // Naming another tenant's customer only ever resolves inside the caller's own tenant.
  const ghost = d.client(await d.issueClient('spiffe://acme/ghost/app'));
  const g = await expectCode(encrypt(ghost), GrpcCode.NOT_FOUND, 'identity of a tenant that does not exist');
  assert.match(g.details, /^not found/, 'NOT_FOUND message');
});

test('grpc.health.v1 reports SERVING for the server and both services', async () => {
  const pkg = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: unknown, o: object) => Client } } };
  };
  const creds = credentials.createSsl(
    readFileSync(d.pki('ca.pem')),
    readFileSync(d.pki('service-key.pem')),
    readFileSync(d.pki('service.pem')),
  );
  const client = new pkg.grpc.health.v1.Health(d.address, creds, {
    'grpc.ssl_target_name_override': 'localhost',
  });
  for (const service of ['', 'keybroker.v1.Crypto', 'keybroker.v1.Admin']) {
    const r = await new Promise<R>((resolve, reject) =>
      (client as unknown as { check: (q: object, cb: (e: ServiceError | null, r: R) => void) => void }).check(
        { service },
        (e, res) => (e ? reject(e) : resolve(res)),
      ),
    );
    assert.equal(r.status, 'SERVING', `health of "${service}"`);
  }
  client.close();
});

test('server reflection lists keybroker.v1.Admin and keybroker.v1.Crypto', async () => {
  const c = d.client('service');
  // ServerReflectionRequest{ list_services: "*" } = field 7, string "*".
  const req = Buffer.from([0x3a, 0x01, 0x2a]);
  const call = c.crypto.raw.makeBidiStreamRequest(
    '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  const got: Buffer[] = [];
  call.on('data', (b: Buffer) => got.push(b));
  const done = new Promise((resolve, reject) => {
    call.on('end', resolve);
    call.on('error', reject);
  });
  call.write(req);
  call.end();
  await done;
  const text = Buffer.concat(got).toString('latin1');
  for (const s of ['keybroker.v1.Admin', 'keybroker.v1.Crypto', 'grpc.health.v1.Health']) {
    assert.ok(text.includes(s), `reflection list_services should include ${s}: ${JSON.stringify(text)}`);
  }
});

test('an ML-DSA-65 PKI (keybroker init --pki-alg mldsa65) works for mTLS end to end', async () => {
  const pq = await startDaemon({ init: { pkiAlg: 'mldsa65' } });
  try {
    const r = await pq
      .client('service')
      .crypto.unary<R>('Encrypt', { plaintext: Buffer.from('pq'), aad: Buffer.alloc(0) });
    assert.ok((r.ciphertext as Buffer).length > 2, 'Encrypt over an ML-DSA-65 mTLS channel');
    const cert = new X509Certificate(readFileSync(pq.pki('server.pem')));
    assert.equal(cert.publicKey.asymmetricKeyType, 'ml-dsa-65', 'server key type');
  } finally {
    assert.equal(await pq.stop(), 0);
    removeDataDir(pq.dataDir);
  }
});
