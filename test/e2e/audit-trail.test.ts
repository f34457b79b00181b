/**
 * The audit trail of the real daemon over gRPC + mTLS: every RPC called here leaves exactly one
 * record (a stream: its opening and its result) with identity, org, tenant, rpc, result and code,
 * and the file never holds the plaintexts, ciphertexts, data keys or signatures that went
 * through; `keybroker audit verify` passes on the daemon's file with its checkpoint key; a full
 * audit filesystem (a small tmpfs, root only) fails requests with UNAVAILABLE and drops /readyz,
 * and service resumes when space returns; kill -9 under load leaves a chain that verifies with
 * every acknowledged request in it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import type { RecordEntry } from '../../daemon/src/audit/audit-record.ts';
import { REPO_ROOT, initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
const ADMIN = 'spiffe://acme/admin/root';
const SVC = 'spiffe://acme/alpha/app';

const base = mkdtempSync(join(tmpdir(), 'kb-audit-trail-'));
const auditDir = join(base, 'auditfs');
mkdirSync(auditDir);
let mounted = false;
if (process.getuid?.() === 0) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', auditDir], { stdio: 'pipe' });
    mounted = true;
  } catch {
    mounted = false;
  }
}
const auditPath = join(auditDir, 'audit.log');
const env = { KB_AUDIT_PATH: auditPath, KB_AUDIT_CHECKPOINT_EVERY: '10' };

let d: DaemonHandle;
let dataDir: string;
let svc: KeybrokerClient;
let admin: KeybrokerClient;
let killed = false;

before(async () => {
  dataDir = await initTestDataDir();
  d = await startDaemon({ dataDir, env });
  svc = d.client('service');
  admin = d.client('admin');
});
after(async () => {
  if (!killed) assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  else d.closeClients();
  if (mounted) execFileSync('umount', [auditDir]);
  rmSync(base, { recursive: true, force: true });
  removeDataDir(dataDir);
});

const records = async (): Promise<RecordEntry[]> => queryAudit(auditPath, {});

/**
 * `keybroker audit verify` on the daemon's file with its checkpoint key; returns stdout. The
 * daemon is running (or was killed), so the entries after its last checkpoint are unsigned yet.
 */
function cliVerify(): string {
  const r = spawnSync(
    process.execPath,
    [
      CLI,
      'audit',
      'verify',
      '--file',
      auditPath,
      '--public-key',
      join(auditDir, 'audit-key.pem'),
      '--allow-unsigned-tail',
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, `keybroker audit verify exit ${r.status}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

interface Expect {
  readonly identity: string;
  readonly rpc: string;
  readonly result: 'ok' | 'denied' | 'error';
  readonly tenant?: string;
  readonly customer?: string;
  readonly code?: string;
  /** Records for this request id (2 for a stream: opened + result). */
  readonly n?: number;
  /** A state-changing RPC: an `intent` record comes first (then the outcome). */
  readonly intent?: boolean;
  readonly reason?: RegExp;
}

test('every RPC leaves exactly one record with the right fields, and no key material or data', async () => {
  const plaintext = Buffer.concat([Buffer.from('AUDIT-PLAINTEXT-MARKER-'), randomBytes(32)]);
  const aad = Buffer.from('aad-for-audit');
  const message = randomBytes(48);
  const secrets: [string, Buffer][] = [
    ['plaintext', plaintext],
    ['message', message],
  ];
  const expected = new Map<string, Expect>();
  let n = 0;
  const id = (e: Expect) => {
    const rid = `trail-${++n}`;
    expected.set(rid, e);
    return { requestId: rid };
  };
  const C = (m: string) => `keybroker.v1.Crypto/${m}`;
  const ok = (rpc: string, extra: Partial<Expect> = {}): Expect => ({
    identity: SVC,
    rpc,
    result: 'ok',
    tenant: 'alpha',
    ...extra,
  });

  const enc = await svc.crypto.unary<R>('Encrypt', { plaintext, aad }, id(ok(C('Encrypt'))));
  const ct = enc.ciphertext as Buffer;
  secrets.push(['ciphertext', ct.subarray(8, 8 + 32)]);
  await svc.crypto.unary('Decrypt', { ciphertext: ct, aad }, id(ok(C('Decrypt'))));
  const bad = Buffer.from(ct);
  bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1;
  await expectCode(
    svc.crypto.unary(
      'Decrypt',
      { ciphertext: bad, aad },
      id(ok(C('Decrypt'), { result: 'error', code: 'DECRYPTION_FAILED' })),
    ),
    GrpcCode.INVALID_ARGUMENT,
    'Decrypt of a tampered ciphertext',
  );
  const batch = await svc.crypto.unary<R>(
    'EncryptBatch',
    {
      items: [
        { plaintext, aad },
        { plaintext, aad },
      ],
    },
    id(ok(C('EncryptBatch'))),
  );
  assert.equal((batch.results as R[]).length, 2);
  const dk = await svc.crypto.unary<R>('GenerateDataKey', { aad, length: 32 }, id(ok(C('GenerateDataKey'))));
  secrets.push(
    ['data key', dk.plaintextKey as Buffer],
    ['wrapped key', (dk.wrappedKey as Buffer).subarray(8, 40)],
  );
  await svc.crypto.unary('DecryptDataKey', { wrappedKey: dk.wrappedKey, aad }, id(ok(C('DecryptDataKey'))));
  const rw = await svc.crypto.unary<R>('Rewrap', { ciphertext: ct, aad }, id(ok(C('Rewrap'))));
  secrets.push(['rewrapped', (rw.ciphertext as Buffer).subarray(8, 40)]);
  await expectCode(
    svc.crypto.unary(
      'Encrypt',
      { plaintext, aad, customer: 'nobody' },
      id(ok(C('Encrypt'), { result: 'error', code: 'NOT_FOUND', customer: 'nobody' })),
    ),
    GrpcCode.NOT_FOUND,
    'Encrypt for a missing customer',
  );
  await svc.keys.unary(
    'CreateKey',
    { keyId: 'audit-sig', algorithm: 'KEY_ALGORITHM_ML_DSA_65' },
    id(ok('keybroker.v1.Keys/CreateKey', { intent: true })),
  );
  const sig = await svc.keys.unary<R>(
    'Sign',
    { keyId: 'audit-sig', message },
    id(ok('keybroker.v1.Keys/Sign')),
  );
  secrets.push(['signature', (sig.signature as Buffer).subarray(0, 32)]);

  const A = (rpc: string, extra: Partial<Expect> = {}): Expect => ({
    identity: ADMIN,
    rpc,
    result: 'ok',
    ...extra,
  });
  await admin.admin.unary(
    'CreateCustomer',
    { org: 'acme', tenant: 'alpha', customer: 'c-audit' },
    id(A('keybroker.v1.Admin/CreateCustomer', { tenant: 'alpha', customer: 'c-audit', intent: true })),
  );
  await admin.admin.unary('ListTenants', { org: 'acme' }, id(A('keybroker.v1.Admin/ListTenants')));
  const req = await admin.approvals.unary<R>(
    'RequestApproval',
    { org: 'acme', operation: 'APPROVAL_OPERATION_ROTATE_ORG_KEY' },
    id(
      A('keybroker.v1.Approvals/RequestApproval', {
        reason: /requested rotate-oek \(approval apr-/,
        intent: true,
      }),
    ),
  );
  const apr = String((req.approval as R).approvalId);
  await expectCode(
    admin.approvals.unary(
      'ApproveRequest',
      { approvalId: apr },
      id(
        A('keybroker.v1.Approvals/ApproveRequest', {
          result: 'denied',
          code: 'PERMISSION_DENIED',
          reason: /self-approval refused/,
          intent: true,
        }),
      ),
    ),
    GrpcCode.PERMISSION_DENIED,
    'self-approval',
  );
  await admin.approvals.unary(
    'CancelApproval',
    { approvalId: apr },
    id(A('keybroker.v1.Approvals/CancelApproval', { reason: /cancelled approval apr-/, intent: true })),
  );
  await admin.policy.unary('GetPolicy', {}, id(A('keybroker.v1.Policy/GetPolicy')));
  await expectCode(
    svc.admin.unary(
      'ListTenants',
      { org: 'acme' },
      id({
        identity: SVC,
        rpc: 'keybroker.v1.Admin/ListTenants',
        result: 'denied',
        code: 'PERMISSION_DENIED',
      }),
    ),
    GrpcCode.PERMISSION_DENIED,
    'service calling an Admin RPC',
  );
  await expectCode(
    admin.crypto.unary(
      'Encrypt',
      { plaintext, aad },
      id(A(C('Encrypt'), { result: 'denied', code: 'PERMISSION_DENIED' })),
    ),
    GrpcCode.PERMISSION_DENIED,
    'admin calling the data plane',
  );
  // A stream: its opening is on record before any output, then its result.
  const s = svc.crypto.stream('EncryptStream', id(ok(C('EncryptStream'), { n: 2 })));
  const out: R[] = [];
  s.on('data', (m: R) => out.push(m));
  const done = new Promise<void>((res, rej) => {
    s.on('status', (st: { code: number }) => (st.code === 0 ? res() : rej(new Error(`stream ${st.code}`))));
    s.on('error', (e: ServiceError) => rej(e));
  });
  s.write({ init: { aad } });
  s.write({ plaintext });
  s.end();
  await done;
  assert.ok(out.length >= 2, 'EncryptStream answered header and chunks');

  const all = await records();
  for (const [rid, e] of expected) {
    const got = all.filter((r) => r.requestId === rid);
    assert.equal(
      got.length,
      (e.n ?? 1) + (e.intent ? 1 : 0),
      `${e.rpc} (${rid}): records ${JSON.stringify(got)}`,
    );
    if (e.intent) assert.equal(got[0]?.result, 'intent', `${e.rpc} (${rid}): intent first`);
    const r = got[got.length - 1] as RecordEntry;
    const what = `${e.rpc} (${rid}) record ${JSON.stringify(r)}`;
    assert.equal(r.rpc, e.rpc, what);
    assert.equal(r.identity, e.identity, what);
    assert.equal(r.org, 'acme', what);
    assert.equal(r.tenant, e.tenant, what);
    assert.equal(r.result, e.result, what);
    if (e.code !== undefined) assert.equal(r.code, e.code, what);
    if (e.result === 'ok') assert.equal(r.code, undefined, what);
    else assert.ok(r.code !== undefined, `${what}: a failed call names its code`);
    if (e.customer !== undefined) assert.equal(r.customer, e.customer, what);
    if (e.reason !== undefined) assert.match(r.reason ?? '', e.reason, what);
  }
  const file = readFileSync(auditPath);
  for (const [what, b] of secrets) {
    for (const form of [
      b,
      Buffer.from(b.toString('base64')),
      Buffer.from(b.toString('base64url')),
      Buffer.from(b.toString('hex')),
    ]) {
      assert.equal(file.indexOf(form.subarray(0, 24)), -1, `the audit file contains the ${what}`);
    }
  }
  assert.equal(file.indexOf('AUDIT-PLAINTEXT-MARKER'), -1, 'the audit file contains plaintext');
});

test('keybroker audit verify passes on the daemon audit file (chain and signed checkpoints)', () => {
  const outText = cliVerify();
  const m = /OK: (\d+) entries \((\d+) records, (\d+) checkpoints, (\d+) signatures verified\)/.exec(outText);
  assert.ok(m, `verify output: ${outText}`);
  assert.ok(Number(m[3]) >= 1 && m[3] === m[4], `checkpoints present and all verified: ${outText}`);
});

/** Fill the filesystem with a filler file until ENOSPC. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

test(
  'audit filesystem full: requests fail UNAVAILABLE, /readyz drops, service resumes when space returns',
  { skip: mounted ? false : 'needs root and mount(8) for a small tmpfs' },
  async () => {
    const aad = Buffer.from('x');
    const plaintext = Buffer.from('disk full test');
    const filler = join(auditDir, 'filler');
    fill(filler);
    // The last partly filled page of the log may take a few more lines before ENOSPC.
    let firstFailure: ServiceError | undefined;
    for (let i = 0; i < 300 && firstFailure === undefined; i++) {
      try {
        await svc.crypto.unary('Encrypt', { plaintext, aad }, { requestId: `full-probe-${i}` });
      } catch (err) {
        firstFailure = err as ServiceError;
      }
    }
    assert.equal(firstFailure?.code, GrpcCode.UNAVAILABLE, `while full: ${firstFailure?.details}`);
    await expectCode(
      svc.crypto.unary('Encrypt', { plaintext, aad }, { requestId: 'while-full' }),
      GrpcCode.UNAVAILABLE,
      'Encrypt while the audit disk is full',
    );
    await expectCode(
      admin.admin.unary('ListTenants', { org: 'acme' }),
      GrpcCode.UNAVAILABLE,
      'Admin while full',
    );
    let ready = { status: 0, body: '' };
    for (let i = 0; i < 60 && ready.status !== 503; i++) {
      ready = await d.metrics('/readyz');
      if (ready.status !== 503) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ready.status, 503, `/readyz while full: ${ready.body}`);
    assert.match(ready.body, /audit/, '/readyz names the audit log');

    unlinkSync(filler);
    let resumed = false;
    for (let i = 0; i < 100 && !resumed; i++) {
      try {
        await svc.crypto.unary('Encrypt', { plaintext, aad }, { requestId: `after-full-${i}` });
        resumed = true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(resumed, 'Encrypt works again once space returns');
    for (let i = 0; i < 50 && (await d.metrics('/readyz')).status !== 200; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal((await d.metrics('/readyz')).status, 200, '/readyz back');
    const ids = new Set((await records()).map((r) => r.requestId));
    assert.equal(ids.has('while-full'), false, 'a refused request has no record');
    cliVerify();
  },
);

test('kill -9 under load: the chain verifies and holds every acknowledged request', async (t) => {
  const acked: string[] = [];
  const aad = Buffer.from('load');
  const plaintext = Buffer.from('kill -9 load');
  let stop = false;
  let seq = 0;
  const end = Date.now() + 20_000;
  const loop = async () => {
    while (!stop && Date.now() < end && seq < 20_000) {
      const rid = `load-${++seq}`;
      try {
        await svc.crypto.unary('Encrypt', { plaintext, aad }, { requestId: rid, deadlineMs: 5000 });
        acked.push(rid);
      } catch {
        return;
      }
    }
  };
  const loops = Array.from({ length: 16 }, loop);
  while (acked.length < 400 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  d.proc.kill('SIGKILL');
  killed = true;
  stop = true;
  await Promise.all(loops);
  await d.exited;
  // Aims at 400 before the kill; a very slow machine may get fewer within 20 s.
  assert.ok(acked.length >= 50, `load was acknowledged before the kill: ${acked.length}`);

  // Restart as systemd would: the torn tail (if any) is cut, the chain continues.
  d.closeClients();
  d = await startDaemon({ dataDir, env });
  killed = false;
  const c = d.client('service');
  await c.crypto.unary('Encrypt', { plaintext, aad }, { requestId: 'after-restart' });
  assert.equal(await d.stop(), 0);
  killed = true;
  const outText = cliVerify();
  const ids = new Set((await records()).map((r) => r.requestId));
  const missing = acked.filter((rid) => !ids.has(rid));
  assert.deepEqual(
    missing.slice(0, 10),
    [],
    `${missing.length} of ${acked.length} acknowledged requests missing`,
  );
  assert.ok(ids.has('after-restart'), 'the chain continues after the restart');
  assert.match(outText, /^OK: /);
  t.diagnostic(`${acked.length} acknowledged before SIGKILL, all in the chain; ${outText.trim()}`);
});
