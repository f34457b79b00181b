/**
 * Operations against the real daemon process: SIGTERM under load loses no acknowledged work
 * (checked after a restart on the same data dir), an HSM fault gives the degraded behaviour
 * and recovers, SIGHUP swaps the server certificate without dropping connections, an HSM
 * unreachable at start means "not ready", metrics are exported, and logs leak no secrets.
 * The tests run in order and share one data dir.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, test } from 'node:test';
import { REPO_ROOT, startDaemon, initTestDataDir, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode, healthCheck } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const MARK = 'PLAINTEXT-MARKER-b61c';
const outputs: string[] = [];
const secrets: string[] = [];
let dataDir = '';
let d: DaemonHandle | undefined;

after(async () => {
  if (d && d.proc.exitCode === null) await d.stop();
  if (dataDir) removeDataDir(dataDir);
});

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const acked: { plaintext: Buffer; ciphertext: Buffer }[] = [];
const ackedCustomers: string[] = [];

test('SIGTERM under load: drains, exits 0, and every acknowledged call survives a restart', async () => {
  dataDir = await initTestDataDir();
  d = await startDaemon({ dataDir });
  const admin = d.client('admin');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'cold' });
  const svc = d.client('service');
  let stop = false;
  const worker = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const plaintext = Buffer.from(`${MARK} ${w}/${i} ${randomBytes(8).toString('hex')}`);
      try {
        const r = await svc.crypto.unary<R>('Encrypt', { plaintext, aad: Buffer.from('load') });
        acked.push({ plaintext, ciphertext: r.ciphertext as Buffer });
      } catch {
        return; // refused or cut off by the shutdown: not acknowledged, so nothing to check
      }
    }
  };
  const adminWorker = async () => {
    for (let i = 0; !stop; i++) {
      try {
        await admin.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: `c${i}` });
        ackedCustomers.push(`c${i}`);
      } catch {
        return;
      }
    }
  };
  const workers = [...Array.from({ length: 8 }, (_, w) => worker(w)), adminWorker()];
  await until('some acknowledged work', async () => acked.length > 100 && ackedCustomers.length > 3);
  d.proc.kill('SIGTERM');
  const code = await d.exited;
  stop = true;
  await Promise.all(workers);
  outputs.push(d.output);
  d.closeClients();
  assert.equal(code, 0, `exit code after SIGTERM under load:\n${d.output.slice(-3000)}`);
  assert.ok(
    d.lines.some((l) => l.msg === 'stopped' && l.forced === false),
    'drained without forcing',
  );

  d = await startDaemon({ dataDir });
  const svc2 = d.client('service');
  for (const [i, a] of acked.entries()) {
    const r = await svc2.crypto.unary<R>('Decrypt', { ciphertext: a.ciphertext, aad: Buffer.from('load') });
    assert.deepEqual(
      r.plaintext,
      a.plaintext,
      `acknowledged ciphertext ${i} of ${acked.length} after restart`,
    );
  }
  const listed = (
    (await d.client('admin').admin.unary<R>('ListCustomers', { org: 'acme', tenant: 'alpha' }))
      .customers as R[]
  ).map((c) => c.customer);
  for (const c of ackedCustomers)
    assert.ok(listed.includes(c), `acknowledged CreateCustomer ${c} after restart`);
});

test('HSM fault: warm keys keep serving, cold ones get UNAVAILABLE, not ready; then recovery', async () => {
  assert.ok(d);
  const dd = d;
  const alpha = dd.client('service');
  const cold = dd.client(await dd.issueClient('spiffe://acme/cold/app'));
  await alpha.crypto.unary('Encrypt', { plaintext: Buffer.from('warm-up'), aad: Buffer.alloc(0) });
  assert.equal((await dd.metrics('/readyz')).status, 200, 'ready before the fault');

  dd.toggleHsmFault();
  await dd.waitFor((l) => l.msg === 'test hook: HSM fault injection toggled' && l.faulty === true);
  const warm = await alpha.crypto.unary<R>('Encrypt', {
    plaintext: Buffer.from('still here'),
    aad: Buffer.alloc(0),
  });
  const back = await alpha.crypto.unary<R>('Decrypt', { ciphertext: warm.ciphertext, aad: Buffer.alloc(0) });
  assert.equal((back.plaintext as Buffer).toString(), 'still here', 'warm key serves during the fault');
  const e = await expectCode(
    cold.crypto.unary('Encrypt', { plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }),
    GrpcCode.UNAVAILABLE,
    'cold tenant during the HSM fault',
  );
  assert.equal(e.details, 'key store unavailable');
  await until('readyz reports not ready', async () => (await dd.metrics('/readyz')).status === 503);
  await until(
    'gRPC health NOT_SERVING',
    async () => (await healthCheck(dd.address, (f) => dd.pki(f), '')) === 'NOT_SERVING',
  );
  const rz = JSON.parse((await dd.metrics('/readyz')).body) as R;
  assert.equal(rz.degraded, true, `readyz body ${JSON.stringify(rz)}`);
  assert.match((await dd.metrics()).body, /^keybroker_degraded 1$/m, 'metrics keybroker_degraded');

  dd.toggleHsmFault();
  await until(
    'cold tenant served again',
    async () =>
      cold.crypto.unary('Encrypt', { plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }).then(
        () => true,
        () => false,
      ),
    30_000,
  );
  await until('readyz ready again', async () => (await dd.metrics('/readyz')).status === 200, 30_000);
  await until(
    'gRPC health SERVING again',
    async () => (await healthCheck(dd.address, (f) => dd.pki(f), 'keybroker.v1.Crypto')) === 'SERVING',
  );
});

function serverSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols: ['h2'] });
    s.once('secureConnect', () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.once('error', reject);
  });
}

test('SIGHUP swaps the server certificate; live connections keep working; a bad one is refused', async () => {
  assert.ok(d);
  const dd = d;
  const ca = readFileSync(dd.pki('ca.pem'));
  const live = dd.client('service');
  await live.crypto.unary('Encrypt', { plaintext: Buffer.from('before'), aad: Buffer.alloc(0) });
  const before = await serverSerial(dd.grpcPort, ca);
  const fresh = await (
    await dd.ca()
  ).issue({ commonName: 'keybroker', dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server' });
  writeFileSync(dd.pki('server.pem'), fresh.certPem);
  writeFileSync(dd.pki('server-key.pem'), fresh.keyPem, { mode: 0o600 });
  const reloads = () => dd.lines.filter((l) => l.msg === 'reloaded config and TLS certificates').length;
  const n = reloads();
  dd.proc.kill('SIGHUP');
  await until('reload logged', async () => reloads() > n);
  const afterSerial = await serverSerial(dd.grpcPort, ca);
  assert.notEqual(afterSerial, before, 'new handshakes see the new certificate');
  const parses = async () =>
    Number(/^keybroker_tls_identity_parses_total (\d+)/m.exec((await dd.metrics()).body)?.[1]);
  const parsesBefore = await parses();
  await live.crypto.unary('Encrypt', { plaintext: Buffer.from('after'), aad: Buffer.alloc(0) });
  assert.equal(
    await parses(),
    parsesBefore,
    'the live connection survived the reload (no new TLS connection)',
  );

  // A key that does not match its certificate: the reload fails and the old context stays.
  const other = await (await dd.ca()).issue({ commonName: 'x', dnsNames: ['localhost'], usage: 'server' });
  writeFileSync(dd.pki('server-key.pem'), other.keyPem, { mode: 0o600 });
  dd.proc.kill('SIGHUP');
  await dd.waitFor((l) => l.msg === 'reload failed; keeping the previous config');
  assert.equal(await serverSerial(dd.grpcPort, ca), afterSerial, 'still serving the last good certificate');
  writeFileSync(dd.pki('server-key.pem'), fresh.keyPem, { mode: 0o600 });
});

test('metrics: per-RPC counts and latency by status, HSM calls, readiness', async () => {
  assert.ok(d);
  const m = await d.metrics();
  assert.equal(m.status, 200);
  for (const re of [
    /^keybroker_rpc_requests_total\{rpc="keybroker\.v1\.Crypto\/Encrypt",code="OK"\} \d+/m,
    /^keybroker_rpc_requests_total\{rpc="keybroker\.v1\.Crypto\/Encrypt",code="UNAVAILABLE"\} \d+/m,
    /^keybroker_rpc_duration_seconds_bucket\{le="0\.005",rpc="keybroker\.v1\.Crypto\/Decrypt",code="OK"\} \d+/m,
    /^keybroker_hsm_call_duration_seconds_count\{op="unwrap_key",outcome="ok"\} \d+/m,
    /^keybroker_hsm_errors_total\{op="[a-z_]+",code="HSM_UNAVAILABLE"\} \d+/m,
    /^keybroker_hsm_sessions_total \d+/m,
    /^keybroker_ready 1$/m,
    /^keybroker_key_cache_hits [1-9]\d*$/m,
    /^keybroker_key_cache_misses [1-9]\d*$/m,
    /^keybroker_key_cache_entries [1-9]\d*$/m,
    /^keybroker_tenant_files_open [1-9]\d*$/m,
  ]) {
    assert.match(m.body, re, `metrics should match ${re}`);
  }
  assert.equal((await d.metrics('/healthz')).status, 200);
  const parses = Number(/^keybroker_tls_identity_parses_total (\d+)/m.exec(m.body)?.[1]);
  const requests = [...m.body.matchAll(/^keybroker_rpc_requests_total\{[^}]*\} (\d+)/gm)].reduce(
    (a, x) => a + Number(x[1]),
    0,
  );
  assert.ok(
    parses > 0 && parses * 10 < requests,
    `identities parsed once per connection: ${parses} parses, ${requests} calls`,
  );
});

test('a second daemon on the same data dir: not ready, names the audit log the first one holds', async () => {
  assert.ok(d);
  const first = d;
  const second = await startDaemon({ dataDir, waitReady: false });
  try {
    const l = await second.waitFor((x) => x.msg === 'cannot open audit log; retrying');
    assert.equal(l.step, 'audit log');
    assert.match(String(l.err), new RegExp(`in use by process ${first.proc.pid}\\b`));
    const r = await second.metrics('/readyz');
    assert.equal(r.status, 503);
    assert.match(
      (JSON.parse(r.body) as { reason: string }).reason,
      /^cannot open the audit log: (failed precondition: )?audit file is in use by process \d+$/,
    );
    assert.ok(!second.output.includes('cannot open HSM'), 'the HSM opened');
    // A call meanwhile fails UNAVAILABLE naming the audit log, not the key store.
    const err = await expectCode(
      second.client('service').crypto.unary('Encrypt', { plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }),
      GrpcCode.UNAVAILABLE,
      'Encrypt while the audit log is held by another daemon',
    );
    assert.equal(err.details, 'audit log unavailable');
  } finally {
    assert.equal(await second.stop(), 0);
    outputs.push(second.output);
  }
  // The first daemon kept its lock and serves on.
  assert.equal((await first.metrics('/readyz')).status, 200);
  const c = first.client('service').crypto;
  const e = await c.unary<{ ciphertext: Buffer }>('Encrypt', {
    plaintext: Buffer.from('still'),
    aad: Buffer.alloc(0),
  });
  assert.ok(e.ciphertext.length > 0);
});

test('a tenant file no tenant names (a crash while creating tenants) is reported at start, and left alone', async () => {
  assert.ok(d);
  assert.ok(!d.output.includes('tenant files that no tenant names'), 'none before');
  assert.equal(await d.stop(), 0);
  outputs.push(d.output);
  const stray = join(dataDir, 'tenants', 'acme', 'ghost.0badc0de.db');
  writeFileSync(stray, 'not a tenant');
  d = await startDaemon({ dataDir });
  const l = await d.waitFor((x) => x.msg?.startsWith('tenant files that no tenant names') === true);
  assert.equal(l.count, 1);
  assert.deepEqual(l.files, ['tenants/acme/ghost.0badc0de.db']);
  assert.ok(existsSync(stray), 'reported, not deleted');
  rmSync(stray);
});

test('an HSM unreachable at start: listening but not ready, data plane UNAVAILABLE, clean stop', async () => {
  assert.ok(d);
  assert.equal(await d.stop(), 0);
  outputs.push(d.output);
  d = await startDaemon({ dataDir, env: { KB_HSM_MODULE: '/nonexistent/libpkcs11.so' }, waitReady: false });
  const dd = d;
  await dd.waitFor((l) => l.msg === 'cannot open HSM; retrying');
  const r = await dd.metrics('/readyz');
  assert.equal(r.status, 503, `readyz: ${r.body}`);
  assert.equal(
    await healthCheck(dd.address, (f) => dd.pki(f), ''),
    'NOT_SERVING',
    'gRPC health before the HSM opens',
  );
  await expectCode(
    dd.client('service').crypto.unary('Encrypt', { plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }),
    GrpcCode.UNAVAILABLE,
    'Encrypt while the HSM was never reachable',
  );
  assert.equal(await dd.stop(), 0);
  outputs.push(dd.output);
});

test('every call is in the hash-chained audit log, which verifies offline; no payloads in it', () => {
  const file = `${dataDir}/audit/audit.log`;
  const text = readFileSync(file, 'utf8');
  const encrypts = text.split('\n').filter((l) => l.includes('keybroker.v1.Crypto/Encrypt')).length;
  assert.ok(
    encrypts >= acked.length,
    `audit has ${encrypts} Encrypt records for ${acked.length} acknowledged calls`,
  );
  for (const s of [
    MARK,
    ...acked.slice(0, 20).map((a) => a.ciphertext.subarray(20, 44).toString('base64')),
  ]) {
    assert.ok(!text.includes(s), 'the audit log must not contain payloads');
  }
  const r = spawnSync(
    process.execPath,
    [
      join(REPO_ROOT, 'daemon/src/cli/main.ts'),
      'audit',
      'verify',
      '--file',
      file,
      '--public-key',
      `${dataDir}/audit/audit-key.pem`,
    ],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, `keybroker audit verify: ${r.stdout}${r.stderr}`);
});

test('logs carry one line per request and never plaintext, ciphertext, key bytes or PINs', () => {
  secrets.push(
    readFileSync(`${dataDir}/secrets/hsm-user.pin`, 'utf8').trim(),
    readFileSync(`${dataDir}/secrets/hsm-so.pin`, 'utf8').trim(),
    MARK,
    Buffer.from(MARK).toString('base64').slice(0, 16),
    Buffer.from(MARK).toString('hex'),
  );
  for (const a of acked.slice(0, 50)) {
    secrets.push(
      a.ciphertext.subarray(20, 44).toString('base64'),
      a.ciphertext.subarray(20, 40).toString('hex'),
    );
  }
  const all = outputs.join('\n');
  assert.ok(all.length > 10_000, 'logs were captured');
  for (const s of secrets) assert.ok(!all.includes(s), `a secret appears in the logs: ${s.slice(0, 6)}...`);
  const rpcLines = all.split('\n').filter((l) => l.includes('"msg":"rpc"'));
  assert.ok(
    rpcLines.length >= acked.length,
    `one log line per request (${rpcLines.length} for ${acked.length} acked)`,
  );
  const sample = JSON.parse(rpcLines[0] as string) as R;
  for (const f of ['requestId', 'rpc', 'identity', 'tenant', 'code', 'latencyMs']) {
    assert.ok(f in sample, `request log line has ${f}: ${JSON.stringify(sample)}`);
  }
});

test('a second SIGTERM forces the shutdown when a call would hold the drain (exit 1)', async () => {
  d = await startDaemon({ dataDir, env: { KB_LIFECYCLE_SHUTDOWN_GRACE_MS: '600000' } });
  const dd = d;
  const stream = dd.client('service').crypto.stream('EncryptStream');
  stream.on('error', () => undefined); // cut off by the forced stop, as expected
  stream.on('data', () => undefined);
  const opened = once(stream, 'metadata'); // sent once the stream is authorised and audited
  stream.write({ init: { aad: Buffer.alloc(0) } });
  await opened;
  dd.proc.kill('SIGTERM');
  await dd.waitFor((l) => l.msg === 'shutting down: draining');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(dd.proc.exitCode, null, 'still draining: the open stream holds it');
  dd.proc.kill('SIGTERM');
  assert.equal(await dd.exited, 1, 'forced exit code');
  assert.ok(dd.lines.some((l) => l.msg === 'second signal: forcing shutdown'));
  outputs.push(dd.output);
});
