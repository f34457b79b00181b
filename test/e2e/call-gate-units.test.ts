/**
 * The call gate in process, over real gRPC + mTLS on 127.0.0.1:0, with a fake KeyBrokerApi and
 * a controllable audit sink: audit is fail-closed (no durable record, no answer), denied calls
 * are audited, deadlines are enforced by the server (the handler is abandoned, the call is
 * audited as DEADLINE_EXCEEDED), and shutdown drains in-flight calls.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { loadKeybrokerPackage } from '../../daemon/src/api/proto-definitions.ts';
import { connectKeybroker } from '../../daemon/src/api/api-client.ts';
import { ApiServer } from '../../daemon/src/api/api-server.ts';
import { CallGate } from '../../daemon/src/api/call-gate.ts';
import { DefaultAuthorizer } from '../../daemon/src/api/default-authorizer.ts';
import type { AuditPosition, AuditRecordInput, AuditSink } from '../../daemon/src/audit/audit-sink.ts';
import { DEFAULT_CONFIG } from '../../daemon/src/config/config-schema.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { createLoggers } from '../../daemon/src/obs/logger.ts';
import { Metrics } from '../../daemon/src/obs/metrics.ts';
import { createDevCa } from '../../daemon/src/tls/dev-pki.ts';
import { ReloadableServerCredentials } from '../../daemon/src/tls/reloadable-server-credentials.ts';
import { FakeKeyBroker } from '../support/fake-key-broker.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

const encryptDef = (
  loadKeybrokerPackage()['keybroker.v1.Crypto'] as Record<string, { requestSerialize: (o: object) => Buffer }>
).Encrypt;
const encodeEncrypt = (o: { plaintext: Buffer }): Buffer =>
  (encryptDef as { requestSerialize: (o: object) => Buffer }).requestSerialize(o);

class TestSink implements AuditSink {
  records: AuditRecordInput[] = [];
  failing = false;
  append(r: AuditRecordInput): Promise<AuditPosition> {
    if (this.failing) return Promise.reject(new Error('disk full'));
    this.records.push(r);
    return Promise.resolve({ seq: this.records.length, hash: '' });
  }
  head(): AuditPosition {
    return { seq: this.records.length, hash: '' };
  }
  health() {
    return { ok: !this.failing };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kb-gate-'));
const sink = new TestSink();
const broker = new FakeKeyBroker();
let server: ApiServer;
let client: ReturnType<typeof connectKeybroker>;
let admin: ReturnType<typeof connectKeybroker>;
let stopped = false;

before(async () => {
  const ca = await createDevCa('gate test CA');
  const srv = await ca.issue({
    commonName: 'k',
    dnsNames: ['localhost'],
    ips: ['127.0.0.1'],
    usage: 'server',
  });
  const svc = await ca.issue({ commonName: 's', uris: ['spiffe://acme/alpha/app'], usage: 'client' });
  const adm = await ca.issue({ commonName: 'a', uris: ['spiffe://acme/admin/root'], usage: 'client' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'server.pem'), srv.certPem);
  writeFileSync(join(dir, 'server-key.pem'), srv.keyPem);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const loggers = createLoggers('info', quiet);
  const metrics = new Metrics({
    hsmSessions: () => undefined,
    brokerStats: () => undefined,
    ready: () => true,
    degraded: () => false,
  });
  const gate = new CallGate({
    authorizer: () => new DefaultAuthorizer(),
    audit: sink,
    log: loggers.log,
    requestLog: (line) => loggers.request(line),
    metrics,
    defaultDeadlineMs: 30_000,
    shuttingDown: () => false,
  });
  server = new ApiServer({
    credentials: new ReloadableServerCredentials({
      caFile: join(dir, 'ca.pem'),
      certFile: join(dir, 'server.pem'),
      keyFile: join(dir, 'server-key.pem'),
    }),
    gate,
    broker: () => broker.asApi(),
    limits: DEFAULT_CONFIG.limits,
  });
  const port = await server.listen('127.0.0.1', 0);
  const caPem = Buffer.from(ca.certPem);
  client = connectKeybroker({
    address: `127.0.0.1:${port}`,
    caPem,
    certPem: Buffer.from(svc.certPem),
    keyPem: Buffer.from(svc.keyPem),
  });
  admin = connectKeybroker({
    address: `127.0.0.1:${port}`,
    caPem,
    certPem: Buffer.from(adm.certPem),
    keyPem: Buffer.from(adm.keyPem),
  });
});

after(async () => {
  client.close();
  admin.close();
  if (!stopped) await server.shutdown(1000);
  rmSync(dir, { recursive: true, force: true });
});

const enc = (o = {}) =>
  client.crypto.unary<Record<string, unknown>>('Encrypt', { plaintext: Buffer.from('hi') }, o);

test('every call is audited with identity, tenant, rpc and result before it is answered', async () => {
  sink.records = [];
  const r = await enc({ requestId: 'req-123' });
  assert.deepEqual(r.ciphertext, Buffer.from([1, ...Buffer.from('hi')]));
  const rec = sink.records.at(-1);
  assert.equal(rec?.requestId, 'req-123', 'client request id kept');
  assert.equal(rec?.identity, 'spiffe://acme/alpha/app');
  assert.equal(rec?.tenant, 'alpha');
  assert.equal(rec?.rpc, 'keybroker.v1.Crypto/Encrypt');
  assert.equal(rec?.result, 'ok');
  assert.equal(rec?.keyVersion, 1);
});

test('x-request-id: kept from the client or generated; in the response headers, or trailers on failure', async () => {
  const call = (requestId?: string, plaintext = Buffer.from('x')) =>
    new Promise<{ header: string | undefined; trailer: string | undefined; code: number }>((resolve) => {
      const md = new Metadata();
      if (requestId !== undefined) md.set('x-request-id', requestId);
      let header: string | undefined;
      const c = client.crypto.raw.makeUnaryRequest(
        '/keybroker.v1.Crypto/Encrypt',
        (o: object) => encodeEncrypt(o as { plaintext: Buffer }),
        (b: Buffer) => b,
        { plaintext },
        md,
        () => undefined,
      );
      c.on('metadata', (m: Metadata) => (header = m.get('x-request-id')[0] as string | undefined));
      c.on('status', (st: { code: number; metadata: Metadata }) =>
        resolve({ header, trailer: st.metadata.get('x-request-id')[0] as string | undefined, code: st.code }),
      );
    });
  const kept = await call('abc-123');
  assert.equal(kept.header, 'abc-123', 'client id kept, in the headers');
  const generated = await call();
  assert.match(generated.header ?? '', /^[0-9a-f-]{36}$/, 'generated uuid');
  const invalid = await call('bad id with spaces');
  assert.notEqual(invalid.header, 'bad id with spaces', 'invalid ids are replaced');
  const failed = await call('fail-1', Buffer.alloc(2 * 1024 * 1024));
  assert.equal(failed.code, GrpcCode.INVALID_ARGUMENT);
  assert.equal(failed.trailer, 'fail-1', 'id in the trailers of a failed call');
});

test('denied calls are audited as denied', async () => {
  sink.records = [];
  await expectCode(
    admin.crypto.unary('Encrypt', { plaintext: Buffer.from('x') }),
    GrpcCode.PERMISSION_DENIED,
    'admin -> Encrypt',
  );
  assert.equal(sink.records.at(-1)?.result, 'denied');
  assert.equal(sink.records.at(-1)?.code, 'PERMISSION_DENIED');
});

test('fail-closed: when the audit append fails, the call fails UNAVAILABLE even though the work succeeded', async () => {
  sink.failing = true;
  const before = broker.calls;
  try {
    const e = await expectCode(enc(), GrpcCode.UNAVAILABLE, 'Encrypt with a failing audit sink');
    assert.equal(e.details, 'audit log unavailable');
    assert.equal(broker.calls, before + 1, 'the handler ran, its result was withheld');
  } finally {
    sink.failing = false;
  }
});

test('the server enforces deadlines: a hung handler is abandoned and audited as DEADLINE_EXCEEDED', async () => {
  sink.records = [];
  broker.hang = true;
  try {
    await expectCode(enc({ deadlineMs: 300 }), GrpcCode.DEADLINE_EXCEEDED, 'Encrypt with a hung broker');
    const end = Date.now() + 5000;
    while (!sink.records.some((r) => r.code === 'DEADLINE_EXCEEDED') && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const rec = sink.records.find((r) => r.rpc === 'keybroker.v1.Crypto/Encrypt');
    assert.equal(rec?.code, 'DEADLINE_EXCEEDED', `server-side record: ${JSON.stringify(rec)}`);
  } finally {
    broker.hang = false;
    broker.releaseAll();
  }
});

test('KbError from the broker maps to its status; the message is the safe one', async () => {
  const e = await expectCode(
    client.crypto.unary('Decrypt', { ciphertext: Buffer.from('x') }),
    GrpcCode.UNIMPLEMENTED,
    'Decrypt',
  );
  assert.equal(e.details, new KbError('UNIMPLEMENTED').safeMessage);
});

test('shutdown drains: an in-flight call completes, then the server stops (runs last)', async () => {
  broker.hang = true;
  const calls = broker.calls;
  const inflight = enc({ deadlineMs: 10_000 });
  while (broker.calls === calls) await new Promise((r) => setTimeout(r, 10));
  const stopping = server.shutdown(10_000);
  setTimeout(() => broker.releaseAll(), 300);
  const r = await inflight;
  assert.ok(r.ciphertext, 'the in-flight call was answered');
  assert.deepEqual(await stopping, { forced: false }, 'drained without forcing');
  broker.hang = false;
  stopped = true;
});
