/**
 * Keys.CreateImportJob and Keys.ImportKey against the real daemon (SoftHSM2, SQLite, gRPC + mTLS
 * on 127.0.0.1:0): keys made by @noble, wrapped by an outside importer (both wrappings), imported,
 * then used through the broker and checked with noble; a tampered blob, another tenant's job, a
 * policy rule on the job's key name, a bad-input sweep; the CLI (keys import-job / keys import);
 * and the audit records (they name the key; no key bytes or blobs in the audit file or the log).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ml_dsa44, ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { REPO_ROOT, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { externalKey, pkcs8, wrapForJob, type JobForImporter } from '../support/key-importer.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
let other: KeybrokerClient;
let limited: KeybrokerClient;
const secrets: Buffer[] = [];
const noEd = () => new Uint8Array(0);

before(async () => {
  d = await startDaemon({ init: { org: 'acme', tenant: 'alpha' } });
  svc = d.client('service');
  const admin = d.client('admin');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
  other = d.client(await d.issueClient('spiffe://acme/beta/app'));
  limited = d.client(await d.issueClient('spiffe://acme/alpha/limited'));
  const rule = {
    id: 'limited/no-vault-keys',
    effect: 'deny',
    identities: ['spiffe://acme/alpha/limited'],
    rpcs: ['keybroker.v1.Keys/*'],
    keys: ['vault-*'],
  };
  await admin.policy.unary('SetPolicy', {
    policyJson: JSON.stringify({ version: 1, rules: [rule] }),
  });
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

async function job(
  c: KeybrokerClient,
  keyId: string,
  algorithm: string,
  wrapping = 'IMPORT_WRAPPING_ML_KEM_768_AES_KWP',
) {
  const r = await c.keys.unary<R>('CreateImportJob', { keyId, algorithm, wrapping });
  assert.equal(r.wrapping, wrapping);
  assert.ok(Date.parse(r.expireTime as string) > Date.now() + 23 * 3600_000, 'default expiry about 24 h');
  const forImporter: JobForImporter = {
    wrapping: wrapping === 'IMPORT_WRAPPING_ML_KEM_768_AES_KWP' ? 'ml-kem' : 'rsa',
    publicKey: r.publicKey as Buffer,
    kdfInfo: r.kdfInfo as Buffer,
  };
  return { jobId: r.jobId as string, forImporter };
}

test('ML-DSA-65 seed over ML-KEM-768 + KWP: Sign through the broker, noble verifies', async () => {
  const k = externalKey('ml-dsa-65', noEd);
  secrets.push(Buffer.from(k.seed));
  const j = await job(svc, 'imported-dsa', 'KEY_ALGORITHM_ML_DSA_65');
  const blob = wrapForJob(j.forImporter, k.seed);
  secrets.push(blob);
  const r = await svc.keys.unary<{ key: R }>('ImportKey', {
    jobId: j.jobId,
    wrappedKey: blob,
    publicKey: k.publicKey,
  });
  assert.equal(r.key.algorithm, 'KEY_ALGORITHM_ML_DSA_65');
  const msg = Buffer.from('imported over gRPC');
  const s = await svc.keys.unary<R>('Sign', {
    keyId: 'imported-dsa',
    message: msg,
    context: Buffer.from('c'),
  });
  assert.ok(ml_dsa65.verify(s.signature as Buffer, msg, k.publicKey, { context: Buffer.from('c') }));
  await expectCode(
    svc.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: blob }),
    GrpcCode.NOT_FOUND,
    'reused job',
  );
});

test('ML-KEM-1024 seed + expanded (PKCS#8) over RSA-OAEP-3072 + KWP: noble encapsulates, broker decapsulates', async () => {
  const k = externalKey('ml-kem-1024', noEd);
  secrets.push(Buffer.from(k.seed));
  const j = await job(
    svc,
    'imported-kem',
    'KEY_ALGORITHM_ML_KEM_1024',
    'IMPORT_WRAPPING_RSA_OAEP_3072_SHA256_AES_KWP',
  );
  const blob = wrapForJob(j.forImporter, pkcs8('ml-kem-1024', 'both', k.seed, k.expanded as Uint8Array));
  // A tampered blob: the one opaque error, nothing stored; the good blob then imports.
  const bad = Buffer.from(blob);
  bad[bad.length - 3] = (bad[bad.length - 3] as number) ^ 4;
  const e = await expectCode(
    svc.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: bad }),
    GrpcCode.INVALID_ARGUMENT,
    'tampered',
  );
  assert.match(e.details, /decryption failed/);
  await expectCode(
    svc.keys.unary('DescribeKey', { keyId: 'imported-kem' }),
    GrpcCode.NOT_FOUND,
    'nothing stored',
  );
  await svc.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: blob });
  const enc = ml_kem1024.encapsulate(k.publicKey);
  const r = await svc.keys.unary<R>('Decapsulate', { keyId: 'imported-kem', ciphertext: enc.cipherText });
  assert.deepEqual(r.sharedSecret, Buffer.from(enc.sharedSecret));
});

test("cross-tenant: tenant beta cannot use alpha's job (NOT_FOUND), nor see the key", async () => {
  const k = externalKey('ml-dsa-44', noEd);
  const j = await job(svc, 'alpha-only', 'KEY_ALGORITHM_ML_DSA_44');
  const blob = wrapForJob(j.forImporter, k.seed);
  await expectCode(
    other.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: blob }),
    GrpcCode.NOT_FOUND,
    'beta imports with alpha job',
  );
  await expectCode(
    other.keys.unary('DescribeKey', { keyId: 'alpha-only' }),
    GrpcCode.NOT_FOUND,
    'beta sees nothing',
  );
  // Alpha's job is still usable by alpha.
  await svc.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: blob });
});

test("policy: a deny rule on key names applies to ImportKey through the job's key name", async () => {
  const k = externalKey('ml-dsa-44', noEd);
  const j = await job(svc, 'vault-signer', 'KEY_ALGORITHM_ML_DSA_44');
  const blob = wrapForJob(j.forImporter, k.seed);
  await expectCode(
    limited.keys.unary('ImportKey', { jobId: j.jobId, wrappedKey: blob }),
    GrpcCode.PERMISSION_DENIED,
    'limited imports vault-*',
  );
  await expectCode(
    limited.keys.unary('CreateImportJob', { keyId: 'vault-2', algorithm: 'KEY_ALGORITHM_ML_DSA_44' }),
    GrpcCode.PERMISSION_DENIED,
    'limited makes a vault-* job',
  );
  const ok = await job(limited, 'limited-ok', 'KEY_ALGORITHM_ML_DSA_44');
  await limited.keys.unary('ImportKey', { jobId: ok.jobId, wrappedKey: wrapForJob(ok.forImporter, k.seed) });
});

test('bad input: every field of both RPCs', async () => {
  const good = await job(svc, 'sweep', 'KEY_ALGORITHM_ED25519');
  const cases: [string, string, R][] = [
    ['empty key_id', 'CreateImportJob', { keyId: '', algorithm: 'KEY_ALGORITHM_ED25519' }],
    ['bad key_id', 'CreateImportJob', { keyId: 'A B', algorithm: 'KEY_ALGORITHM_ED25519' }],
    ['no algorithm', 'CreateImportJob', { keyId: 'x' }],
    ['HSM algorithm', 'CreateImportJob', { keyId: 'x', algorithm: 'KEY_ALGORITHM_ECDSA_P256' }],
    ['composite', 'CreateImportJob', { keyId: 'x', algorithm: 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256' }],
    ['ttl too short', 'CreateImportJob', { keyId: 'x', algorithm: 'KEY_ALGORITHM_ED25519', ttlSeconds: 59 }],
    [
      'ttl too long',
      'CreateImportJob',
      { keyId: 'x', algorithm: 'KEY_ALGORITHM_ED25519', ttlSeconds: 604801 },
    ],
    ['bad wrapping', 'CreateImportJob', { keyId: 'x', algorithm: 'KEY_ALGORITHM_ED25519', wrapping: 7 }],
    ['bad customer', 'CreateImportJob', { keyId: 'x', algorithm: 'KEY_ALGORITHM_ED25519', customer: '../x' }],
    ['empty job_id', 'ImportKey', { jobId: '', wrappedKey: Buffer.alloc(100) }],
    ['bad job_id', 'ImportKey', { jobId: 'ij-../../x', wrappedKey: Buffer.alloc(100) }],
    ['empty wrapped_key', 'ImportKey', { jobId: good.jobId }],
    ['short wrapped_key', 'ImportKey', { jobId: good.jobId, wrappedKey: Buffer.alloc(1088) }],
    ['huge wrapped_key', 'ImportKey', { jobId: good.jobId, wrappedKey: Buffer.alloc(16 * 1024 + 1) }],
    [
      'huge public_key',
      'ImportKey',
      { jobId: good.jobId, wrappedKey: Buffer.alloc(2000), publicKey: Buffer.alloc(4097) },
    ],
  ];
  for (const [name, rpc, req] of cases)
    await expectCode(svc.keys.unary(rpc, req), GrpcCode.INVALID_ARGUMENT, name);
  await expectCode(
    svc.keys.unary('ImportKey', { jobId: `ij-${'a'.repeat(32)}`, wrappedKey: Buffer.alloc(2000) }),
    GrpcCode.NOT_FOUND,
    'unknown job',
  );
  // The job survived the sweep.
  const k = externalKey('ed25519', () => new Uint8Array(32));
  await svc.keys.unary('ImportKey', { jobId: good.jobId, wrappedKey: wrapForJob(good.forImporter, k.seed) });
});

test('CLI: keys import-job, then keys import of a blob on stdin', () => {
  const cli = (args: string[], input?: Buffer) =>
    spawnSync(
      process.execPath,
      [join(REPO_ROOT, 'daemon/src/cli/main.ts'), ...args, '--data-dir', d.dataDir],
      {
        input,
        timeout: 60_000,
      },
    );
  const r = cli(['keys', 'import-job', 'cli-imported', '--alg', 'ml-dsa-44']);
  assert.equal(r.status, 0, r.stderr.toString());
  const j = JSON.parse(r.stdout.toString()) as R;
  const k = externalKey('ml-dsa-44', noEd);
  const blob = wrapForJob(
    {
      wrapping: 'ml-kem',
      publicKey: Buffer.from(j.publicKey as string, 'base64'),
      kdfInfo: Buffer.from(j.kdfInfo as string, 'base64'),
    },
    k.seed,
  );
  const imp = cli(['keys', 'import', j.jobId as string, '-'], blob);
  assert.equal(imp.status, 0, imp.stderr.toString());
  assert.equal(((JSON.parse(imp.stdout.toString()) as R).key as R).keyId, 'cli-imported');
  const again = cli(['keys', 'import', j.jobId as string, '-'], blob);
  assert.equal(again.status, 1);
  assert.match(again.stderr.toString(), /NOT_FOUND/);
  const msg = Buffer.from('cli');
  return svc.keys.unary<R>('Sign', { keyId: 'cli-imported', message: msg }).then((s) => {
    assert.ok(ml_dsa44.verify(s.signature as Buffer, msg, k.publicKey));
  });
});

test('audit: both RPCs recorded with the key name; no key bytes or blobs in the audit file or the log', async () => {
  const file = join(d.dataDir, 'audit/audit.log');
  const recs = await queryAudit(file, {});
  const imports = recs.filter((r) => r.rpc === 'keybroker.v1.Keys/ImportKey' && r.result === 'ok');
  assert.ok(
    imports.some((r) => r.keyName === 'imported-dsa' && r.keyVersion === 1),
    'ImportKey names key and version',
  );
  assert.ok(
    recs.some((r) => r.rpc === 'keybroker.v1.Keys/CreateImportJob' && r.keyName === 'imported-kem'),
    'CreateImportJob names the key',
  );
  assert.ok(
    recs.some((r) => r.rpc === 'keybroker.v1.Keys/ImportKey' && r.result === 'denied'),
    'the denied import',
  );
  const raw = readFileSync(file, 'utf8');
  for (const s of secrets) {
    for (const enc of [s.toString('hex'), s.toString('base64'), s.subarray(0, 24).toString('base64')])
      assert.ok(
        !raw.includes(enc) && !d.output.includes(enc),
        'key bytes or blob in the audit file or the log',
      );
  }
});
