/**
 * Review H2 over real gRPC + mTLS and the CLI: the receipt key is published out of band (the
 * file `keybroker init` writes, Admin.GetBrokerKeys, `keybroker admin keys`, the start log), all
 * four agree; a real receipt verifies under the pinned key or fingerprint with `keybroker receipt
 * verify`; a receipt signed with any other key does not; the DestroyTenant audit record names the
 * receipt's hash; receipts made on SoftHSM say softwareToken. Who may read the keys.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { initDataDir } from '../../daemon/src/cli/init-command.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode, runCli } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let admin: KeybrokerClient;
let work: string;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-e2e-keys-'));
  await initDataDir({
    'data-dir': dir,
    org: 'acme',
    tenant: 'alpha',
    admin: 'root',
    service: 'app',
    'pki-alg': 'ecdsa-p256',
    port: 0,
    'metrics-port': 0,
    'token-label': 'kb-e2e-keys',
    force: false,
    'broker-keys': true,
  });
  d = await startDaemon({ dataDir: dir });
  admin = d.client('admin');
  work = mkdtempSync(join(tmpdir(), 'kb-e2e-receipts-'));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
  removeDataDir(work);
});

interface Published {
  publicKeyPem: string;
  sha256: string;
  algorithm: string;
}

test('the receipt key is published out of band: init file, GetBrokerKeys, admin keys and the start log agree', async () => {
  const rpc = await admin.admin.unary<R>('GetBrokerKeys', {});
  const receiptKey = rpc.receiptKey as Published;
  const auditKey = rpc.auditCheckpointKey as Published;
  assert.match(receiptKey.sha256, /^[0-9a-f]{64}$/, 'receipt key fingerprint');
  assert.equal(receiptKey.algorithm, 'ecdsa-p256-sha256');
  assert.match(auditKey.sha256, /^[0-9a-f]{64}$/, 'audit checkpoint key fingerprint');
  assert.notEqual(auditKey.sha256, receiptKey.sha256, 'two distinct keys');
  assert.match(String(rpc.brokerInstance), /^kb-[0-9a-f]{16}$/, 'broker instance');
  // The file written at init (before the daemon ever ran) is the same key.
  assert.equal(readFileSync(join(d.dataDir, 'receipt-key.pem'), 'utf8'), receiptKey.publicKeyPem);
  const file = JSON.parse(readFileSync(join(d.dataDir, 'broker-keys.json'), 'utf8')) as R;
  assert.equal((file.receiptKey as Published).sha256, receiptKey.sha256, 'broker-keys.json receipt key');
  assert.equal((file.auditCheckpointKey as Published).sha256, auditKey.sha256, 'broker-keys.json audit key');
  assert.equal(file.brokerInstance, rpc.brokerInstance);
  // The audit key beside the log is the same key.
  assert.equal(
    readFileSync(join(d.dataDir, 'audit/audit-key.pem'), 'utf8').trim(),
    auditKey.publicKeyPem.trim(),
  );
  const log = d.lines.find((l) => typeof l.receiptKeySha256 === 'string');
  assert.equal(log?.receiptKeySha256, receiptKey.sha256, 'start log names the receipt key fingerprint');
  assert.equal(log?.auditCheckpointKeySha256, auditKey.sha256, 'start log names the audit key fingerprint');
  const cli = runCli('admin', 'keys', '--data-dir', d.dataDir, '--addr', `127.0.0.1:${d.grpcPort}`);
  assert.equal(cli.status, 0, `admin keys: ${cli.stderr}`);
  assert.equal(((JSON.parse(cli.stdout) as R).receiptKey as Published).sha256, receiptKey.sha256);
});

test('who may read the broker keys: admins of any org (public, daemon-wide); never a service', async () => {
  const other = d.client(await d.issueClient('spiffe://otherorg/admin/eve'));
  const mine = (await admin.admin.unary<R>('GetBrokerKeys', {})).receiptKey as Published;
  const theirs = (await other.admin.unary<R>('GetBrokerKeys', {})).receiptKey as Published;
  assert.equal(theirs.sha256, mine.sha256, 'one broker, one receipt key');
  for (const [name, who] of [
    ['a tenant service', d.client('service')],
    ['a service of another tenant', d.client(await d.issueClient('spiffe://acme/beta/app'))],
  ] as const)
    await expectCode(who.admin.unary('GetBrokerKeys', {}), GrpcCode.PERMISSION_DENIED, name);
  // The request has no fields: junk in it is ignored, never echoed.
  for (const junk of [{ org: 'acme' }, { org: 7 }, { tenant: '../../etc' }]) {
    const r = await admin.admin.unary<R>('GetBrokerKeys', junk);
    assert.equal((r.receiptKey as Published).sha256, mine.sha256, `request ${JSON.stringify(junk)}`);
  }
});

test('a real receipt verifies under the pinned key (gRPC + CLI); a receipt signed with any other key does not', async () => {
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'doomed' });
  const res = await admin.admin.unary<R>('DestroyTenant', { org: 'acme', tenant: 'doomed' });
  const receipt = res.receipt as { body: string; signature: string; publicKeyPem: string };
  const body = JSON.parse(receipt.body) as R;
  assert.equal(body.v, 2);
  assert.equal(body.softwareToken, true, 'a receipt made on SoftHSM says so');
  const keys = await admin.admin.unary<R>('GetBrokerKeys', {});
  const pinned = keys.receiptKey as Published;
  assert.equal(body.signerKeySha256, pinned.sha256, 'the signed body names the signer key');

  const real = join(work, 'real.json');
  writeFileSync(real, JSON.stringify(res));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const forged = {
    ...receipt,
    signature: sign('sha256', Buffer.from(receipt.body), privateKey).toString('base64'),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
  const fake = join(work, 'forged.json');
  writeFileSync(fake, JSON.stringify(forged));
  const keyFile = join(d.dataDir, 'receipt-key.pem');
  for (const [name, file, pin, want] of [
    ['real, --key', real, ['--key', keyFile], 0],
    ['real, --fingerprint', real, ['--fingerprint', pinned.sha256], 0],
    ['forged (E3), --key', fake, ['--key', keyFile], 1],
    ['forged (E3), --fingerprint', fake, ['--fingerprint', pinned.sha256], 1],
  ] as const) {
    const r = runCli('receipt', 'verify', ...pin, file);
    assert.equal(r.status, want, `receipt verify ${name}: ${r.stdout}${r.stderr}`);
  }
  assert.equal(runCli('receipt', 'verify', real).status, 1, 'no pinned key: refused');

  // The audit record of the destroy names the receipt's hash (covered by the signed checkpoints).
  const hash = createHash('sha256').update(receipt.body).digest('hex');
  const records = await queryAudit(join(d.dataDir, 'audit/audit.log'), {});
  // The outcome record (the intent record before it cannot know the receipt).
  const rec = records.find(
    (x) => x.rpc === 'keybroker.v1.Admin/DestroyTenant' && x.tenant === 'doomed' && x.result === 'ok',
  );
  assert.ok(rec, 'the DestroyTenant outcome record');
  assert.ok(
    rec.reason?.includes(`receipt sha256 ${hash.match(/.{16}/g)?.join(':')}`),
    `the record names the receipt hash: ${rec.reason}`,
  );
});
