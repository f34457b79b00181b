/**
 * Issuing an admin identity from the broker CA needs the two-person rule (issue 20): without an
 * approval it is refused, the requester cannot approve it, the approval names the exact CSR (by
 * its SHA-256), only the requester executes it, once; the new admin certificate then works. A
 * service renewing its own identity and an admin renewing its own need no approval. Real daemon
 * over mTLS on SoftHSM2, policy.twoPersonRule on.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { makeKeyAndCsr } from '../../daemon/src/tls/csr-builder.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let alice: KeybrokerClient;
let bob: KeybrokerClient;

before(async () => {
  d = await startDaemon({ twoPersonRule: true });
  alice = d.client(await d.issueClient('spiffe://acme/admin/alice'));
  bob = d.client(await d.issueClient('spiffe://acme/admin/bob'));
  await alice.certificates.unary('CreateCa', { org: 'acme', algorithm: 'CA_ALGORITHM_ECDSA_P256' });
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const OP = 'APPROVAL_OPERATION_ISSUE_ADMIN_CERTIFICATE';

test('a new admin identity: approval required, bound to the CSR, requester executes once', async () => {
  const carol = await makeKeyAndCsr('mldsa65', 'spiffe://acme/admin/carol');
  const issue = (c: KeybrokerClient, csrPem: string, approvalId = '') =>
    c.certificates.unary<R>('IssueCertificate', { csrPem, approvalId });
  const e = await expectCode(issue(alice, carol.csrPem), GrpcCode.FAILED_PRECONDITION, 'no approval');
  assert.match(e.details, /approval by a second admin required/);

  await expectCode(
    alice.approvals.unary('RequestApproval', { org: 'acme', operation: OP }),
    GrpcCode.INVALID_ARGUMENT,
    'approval without the CSR digest',
  );
  const req = await alice.approvals.unary<R>('RequestApproval', {
    org: 'acme',
    operation: OP,
    policySha256: sha256(carol.csrPem),
  });
  const id = String((req.approval as R).approvalId);
  await expectCode(
    alice.approvals.unary('ApproveRequest', { approvalId: id }),
    GrpcCode.PERMISSION_DENIED,
    'self-approval',
  );
  await expectCode(issue(alice, carol.csrPem, id), GrpcCode.FAILED_PRECONDITION, 'pending approval');
  await bob.approvals.unary('ApproveRequest', { approvalId: id });

  const other = await makeKeyAndCsr('ecdsa-p256', 'spiffe://acme/admin/carol');
  const swapped = await issue(alice, other.csrPem, id).then(
    () => 'issued',
    (err: { code: number }) => err.code,
  );
  assert.notEqual(swapped, 'issued', 'the approval does not cover another CSR (other key)');
  await expectCode(issue(bob, carol.csrPem, id), GrpcCode.PERMISSION_DENIED, 'executed by the approver');

  const r = await issue(alice, carol.csrPem, id);
  const carolClient = d.client({
    certPem: String(r.certificatePem) + String(r.caCertificatePem),
    keyPem: carol.keyPem,
  });
  const tenants = await carolClient.admin.unary<R>('ListTenants', { org: 'acme' });
  assert.ok(Array.isArray(tenants.tenants), 'the new admin identity administers its org');
  const again = await issue(alice, carol.csrPem, id).then(
    () => 'issued',
    (err: { code: number }) => err.code,
  );
  assert.notEqual(again, 'issued', 'an approval is used once');

  // Renewing one's own identity is not a new admin: no approval.
  const own = await makeKeyAndCsr('ecdsa-p256');
  const renewed = await issue(carolClient, own.csrPem);
  assert.match(String(renewed.serial), /^[0-9A-F]{30}$/, 'admin renews its own identity');
  const svc = await makeKeyAndCsr('ecdsa-p256');
  assert.ok((await issue(d.client('service'), svc.csrPem)).serial, 'service renews its own identity');
});
