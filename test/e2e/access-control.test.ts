/**
 * Access control in the real daemon over gRPC + mTLS: the two-person rule for DestroyTenant,
 * DestroyCustomer, RotateOrgKey and SetPolicy (request by A, approve by B, execute by A), with
 * self-approval, wrong executor, reuse, wrong target and expiry refused, and an approval given
 * back when its operation fails; roles (viewer, operator, admin) per RPC; FIPS mode switched on by
 * an approved SetPolicy refusing X-Wing and Ed25519 keys with ALGORITHM_NOT_ALLOWED (and showing
 * in /readyz and metrics); SIGHUP policy reload where a bad file keeps the old policy and a good
 * one takes effect.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import { REPO_ROOT, initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
/** The main daemon's window: long, so slow CI machines never expire a flow by accident. */
const WINDOW_MS = 600_000;
/** The expiry test's own daemon: short enough to wait out once. */
const SHORT_WINDOW_MS = 4000;
const sha = (t: string) => createHash('sha256').update(t, 'utf8').digest('hex');

const base = JSON.parse(DEFAULT_POLICY_TEXT) as { rules: unknown[] };
/** The default rules plus role bindings: vic is a viewer, opal an operator. */
const policyText = (extra: R = {}) =>
  JSON.stringify({
    version: 1,
    roleBindings: [
      { identity: 'spiffe://acme/admin/vic', role: 'viewer' },
      { identity: 'spiffe://acme/admin/opal', role: 'operator' },
    ],
    rules: base.rules,
    ...extra,
  });

let d: DaemonHandle;
let policyFile: string;
let alice: KeybrokerClient;
let bob: KeybrokerClient;
let vic: KeybrokerClient;
let opal: KeybrokerClient;
let svc: KeybrokerClient;
let other: KeybrokerClient;
/** --cert/--key arguments per admin, for the CLI test. */
const certArgs: Record<string, string[]> = {};

before(async () => {
  const dir = await initTestDataDir();
  policyFile = join(dir, 'policy.json');
  writeFileSync(policyFile, policyText());
  d = await startDaemon({
    dataDir: dir,
    twoPersonRule: true,
    // acme is the operator org: its admins replace the daemon-wide policy (FIPS mode below).
    env: {
      KB_POLICY_FILE: policyFile,
      KB_POLICY_APPROVAL_WINDOW_MS: String(WINDOW_MS),
      KB_POLICY_OPERATOR_ORG: 'acme',
    },
  });
  const pairs = {
    alice: await d.issueClient('spiffe://acme/admin/alice'),
    bob: await d.issueClient('spiffe://acme/admin/bob'),
  };
  for (const [name, p] of Object.entries(pairs)) {
    writeFileSync(join(dir, `${name}.pem`), p.certPem);
    writeFileSync(join(dir, `${name}-key.pem`), p.keyPem);
    certArgs[name] = ['--cert', join(dir, `${name}.pem`), '--key', join(dir, `${name}-key.pem`)];
  }
  alice = d.client(pairs.alice);
  bob = d.client(pairs.bob);
  vic = d.client(await d.issueClient('spiffe://acme/admin/vic'));
  opal = d.client(await d.issueClient('spiffe://acme/admin/opal'));
  other = d.client(await d.issueClient('spiffe://globex/admin/gus'));
  svc = d.client('service');
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const OP = {
  tenant: 'APPROVAL_OPERATION_DESTROY_TENANT',
  customer: 'APPROVAL_OPERATION_DESTROY_CUSTOMER',
  oek: 'APPROVAL_OPERATION_ROTATE_ORG_KEY',
  policy: 'APPROVAL_OPERATION_SET_POLICY',
} as const;

async function request(c: KeybrokerClient, req: R): Promise<string> {
  const r = await c.approvals.unary<R>('RequestApproval', { org: 'acme', ...req });
  const a = r.approval as R;
  assert.equal(a.status, 'APPROVAL_STATUS_PENDING', `RequestApproval ${JSON.stringify(req)}: status`);
  assert.match(String(a.approvalId), /^apr-[0-9a-f]{20}$/);
  return String(a.approvalId);
}

/** Failure with FAILED_PRECONDITION whose message names the approval (APPROVAL_REQUIRED). */
async function expectApprovalRequired(p: Promise<unknown>, what: string): Promise<void> {
  const e = await expectCode(p, GrpcCode.FAILED_PRECONDITION, what);
  assert.match(e.details, /approval by a second admin required/, `${what}: details`);
}

/** The common walk for one two-person operation; `exec(client, approvalId)` performs it. */
async function twoPerson(
  name: string,
  req: R,
  exec: (c: KeybrokerClient, approvalId?: string) => Promise<unknown>,
): Promise<unknown> {
  await expectApprovalRequired(exec(alice), `${name} without approval_id`);
  const id = await request(alice, req);
  await expectCode(
    alice.approvals.unary('ApproveRequest', { approvalId: id }),
    GrpcCode.PERMISSION_DENIED,
    `${name}: self-approval by the requester`,
  );
  await expectApprovalRequired(exec(alice, id), `${name} with a pending (unapproved) approval`);
  await expectCode(
    other.approvals.unary('ApproveRequest', { approvalId: id }),
    GrpcCode.NOT_FOUND,
    `${name}: approval by an admin of another org`,
  );
  const approved = (await bob.approvals.unary<R>('ApproveRequest', { approvalId: id })).approval as R;
  assert.equal(approved.status, 'APPROVAL_STATUS_APPROVED', `${name}: approved by bob`);
  assert.equal(approved.approver, 'spiffe://acme/admin/bob');
  await expectCode(
    exec(bob, id),
    GrpcCode.PERMISSION_DENIED,
    `${name} executed by the approver, not the requester`,
  );
  const out = await exec(alice, id);
  const receipt = (out as R).receipt as R | undefined;
  if (receipt !== undefined) {
    // A destroy is idempotent per approval: a retry (the caller lost the answer) gets the same
    // receipt back and destroys nothing more; any other use is still refused.
    const again = (await exec(alice, id)) as R;
    assert.deepEqual(again.receipt, receipt, `${name}: approval used a second time returns its receipt`);
  } else await expectApprovalRequired(exec(alice, id), `${name}: approval used a second time`);
  const listed = (await vic.approvals.unary<R>('ListApprovals', { org: 'acme' })).approvals as R[];
  const mine = listed.find((a) => a.approvalId === id);
  assert.equal(mine?.status, 'APPROVAL_STATUS_EXECUTED', `${name}: ListApprovals shows it executed`);
  return out;
}

test('DestroyTenant needs request by A, approval by B, execution by A', async () => {
  await alice.admin.unary('CreateTenant', { org: 'acme', tenant: 'doomed' });
  await alice.admin.unary('CreateTenant', { org: 'acme', tenant: 'spared' });
  // An approval for one tenant does not destroy another.
  const forSpared = await request(alice, { operation: OP.tenant, tenant: 'spared' });
  await bob.approvals.unary('ApproveRequest', { approvalId: forSpared });
  await expectApprovalRequired(
    alice.admin.unary('DestroyTenant', { org: 'acme', tenant: 'doomed', approvalId: forSpared }),
    'DestroyTenant doomed with the approval for spared',
  );
  const out = (await twoPerson('DestroyTenant', { operation: OP.tenant, tenant: 'doomed' }, (c, id) =>
    c.admin.unary('DestroyTenant', { org: 'acme', tenant: 'doomed', ...(id ? { approvalId: id } : {}) }),
  )) as R;
  assert.ok((out.receipt as R | undefined) !== undefined, 'DestroyTenant returns a receipt');
  await expectCode(
    alice.admin.unary('DescribeTenant', { org: 'acme', tenant: 'doomed' }),
    GrpcCode.NOT_FOUND,
    'destroyed tenant is gone',
  );
  await alice.admin.unary('DescribeTenant', { org: 'acme', tenant: 'spared' });
});

test('a DestroyTenant that fails gives its approval back; the retry with the same approval succeeds', async () => {
  // Approved for a tenant that does not exist yet: the destroy fails NOT_FOUND.
  const id = await request(alice, { operation: OP.tenant, tenant: 'late' });
  await bob.approvals.unary('ApproveRequest', { approvalId: id });
  const destroy = () =>
    alice.admin.unary<R>('DestroyTenant', { org: 'acme', tenant: 'late', approvalId: id });
  await expectCode(destroy(), GrpcCode.NOT_FOUND, 'DestroyTenant of a tenant that does not exist');
  const status = async () =>
    ((await vic.approvals.unary<R>('ListApprovals', { org: 'acme' })).approvals as R[]).find(
      (a) => a.approvalId === id,
    )?.status;
  assert.equal(await status(), 'APPROVAL_STATUS_APPROVED', 'released, not used up');
  const records = (
    await queryAudit(join(d.dataDir, 'audit/audit.log'), { rpc: 'keybroker.v1.Admin/DestroyTenant' })
  ).filter((r) => r.tenant === 'late');
  // An intent record before the attempt, then its outcome (same request id).
  assert.deepEqual(
    records.map((r) => r.result),
    ['intent', 'error'],
  );
  const failed = records.filter((r) => r.result !== 'intent');
  assert.equal(failed[0]?.result, 'error');
  assert.match(
    failed[0]?.reason ?? '',
    new RegExp(`approval ${id}.*approval released: destroy-tenant failed \\(NOT_FOUND\\)`),
  );
  await alice.admin.unary('CreateTenant', { org: 'acme', tenant: 'late' });
  const out = await destroy();
  assert.ok(out.receipt !== undefined, 'the retry destroys the tenant');
  assert.equal(await status(), 'APPROVAL_STATUS_EXECUTED');
  // Used once it succeeded: a retry only gets the same receipt back (nothing more is destroyed).
  assert.deepEqual((await destroy()).receipt, out.receipt, 'the approval is used once it succeeded');
  await alice.admin.unary('CreateTenant', { org: 'acme', tenant: 'late2' });
  await expectApprovalRequired(
    alice.admin.unary<R>('DestroyTenant', { org: 'acme', tenant: 'late2', approvalId: id }),
    'the used approval does not destroy another tenant',
  );
});

test('DestroyCustomer and RotateOrgKey need two distinct admins', async () => {
  await alice.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'erase-me' });
  await twoPerson(
    'DestroyCustomer',
    { operation: OP.customer, tenant: 'alpha', customer: 'erase-me' },
    (c, id) =>
      c.admin.unary('DestroyCustomer', {
        org: 'acme',
        tenant: 'alpha',
        customer: 'erase-me',
        ...(id ? { approvalId: id } : {}),
      }),
  );
  const before = ((await vic.admin.unary<R>('DescribeOrg', { org: 'acme' })).org as R).key as R;
  await twoPerson('RotateOrgKey', { operation: OP.oek }, (c, id) =>
    c.admin.unary('RotateOrgKey', { org: 'acme', ...(id ? { approvalId: id } : {}) }),
  );
  const afterRot = ((await vic.admin.unary<R>('DescribeOrg', { org: 'acme' })).org as R).key as R;
  assert.equal(
    afterRot.primaryVersion,
    Number(before.primaryVersion) + 1,
    'RotateOrgKey made a new OEK version',
  );
});

test('expired approvals are refused (window from config)', async () => {
  // A second daemon whose window is short (policy.approvalWindowMs via KB_POLICY_APPROVAL_WINDOW_MS).
  const short = await startDaemon({
    twoPersonRule: true,
    env: { KB_POLICY_APPROVAL_WINDOW_MS: String(SHORT_WINDOW_MS) },
  });
  try {
    const a2 = short.client(await short.issueClient('spiffe://acme/admin/alice'));
    const b2 = short.client(await short.issueClient('spiffe://acme/admin/bob'));
    await a2.admin.unary('CreateTenant', { org: 'acme', tenant: 'late' });
    const approvedThenLate = await request(a2, { operation: OP.tenant, tenant: 'late' });
    await b2.approvals.unary('ApproveRequest', { approvalId: approvedThenLate });
    const neverApproved = await request(a2, { operation: OP.oek });
    await new Promise((r) => setTimeout(r, SHORT_WINDOW_MS + 300));
    await expectApprovalRequired(
      a2.admin.unary('DestroyTenant', { org: 'acme', tenant: 'late', approvalId: approvedThenLate }),
      'DestroyTenant with an approval past its window',
    );
    await expectCode(
      b2.approvals.unary('ApproveRequest', { approvalId: neverApproved }),
      GrpcCode.FAILED_PRECONDITION,
      'ApproveRequest past the window',
    );
    const expired = (
      await b2.approvals.unary<R>('ListApprovals', { org: 'acme', status: 'APPROVAL_STATUS_EXPIRED' })
    ).approvals as R[];
    const ids = expired.map((a) => a.approvalId);
    assert.ok(
      ids.includes(approvedThenLate) && ids.includes(neverApproved),
      `ListApprovals EXPIRED: ${ids.join(',')}`,
    );
    await a2.admin.unary('DescribeTenant', { org: 'acme', tenant: 'late' });
  } finally {
    assert.equal(await short.stop(), 0, 'short-window daemon exit code');
    removeDataDir(short.dataDir);
  }
  // Cancel works on what is still open; a cancelled approval cannot be approved.
  const cancelled = await request(alice, { operation: OP.oek });
  const c = (await bob.approvals.unary<R>('CancelApproval', { approvalId: cancelled })).approval as R;
  assert.equal(c.status, 'APPROVAL_STATUS_CANCELLED');
  await expectCode(
    bob.approvals.unary('ApproveRequest', { approvalId: cancelled }),
    GrpcCode.FAILED_PRECONDITION,
    'ApproveRequest of a cancelled approval',
  );
});

test('roles: a viewer reads only, an operator cannot destroy or approve, services cannot administer', async () => {
  await vic.admin.unary('ListTenants', { org: 'acme' });
  await vic.policy.unary('GetPolicy', {});
  await vic.approvals.unary('ListApprovals', { org: 'acme' });
  const denied: [string, KeybrokerClient, () => Promise<unknown>][] = [
    [
      'viewer CreateCustomer',
      vic,
      () => vic.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'v1' }),
    ],
    [
      'viewer RotateTenantKey',
      vic,
      () => vic.admin.unary('RotateTenantKey', { org: 'acme', tenant: 'alpha' }),
    ],
    ['viewer CreateTenant', vic, () => vic.admin.unary('CreateTenant', { org: 'acme', tenant: 'v2' })],
    ['viewer DestroyTenant', vic, () => vic.admin.unary('DestroyTenant', { org: 'acme', tenant: 'alpha' })],
    [
      'viewer RequestApproval',
      vic,
      () => vic.approvals.unary('RequestApproval', { org: 'acme', operation: OP.oek }),
    ],
    ['viewer SetPolicy', vic, () => vic.policy.unary('SetPolicy', { policyJson: policyText() })],
    [
      'operator DestroyCustomer',
      opal,
      () => opal.admin.unary('DestroyCustomer', { org: 'acme', tenant: 'alpha', customer: 'default' }),
    ],
    ['operator RotateOrgKey', opal, () => opal.admin.unary('RotateOrgKey', { org: 'acme' })],
    [
      'operator RequestApproval',
      opal,
      () => opal.approvals.unary('RequestApproval', { org: 'acme', operation: OP.oek }),
    ],
    ['service ListTenants', svc, () => svc.admin.unary('ListTenants', { org: 'acme' })],
    [
      'service RequestApproval',
      svc,
      () => svc.approvals.unary('RequestApproval', { org: 'acme', operation: OP.oek }),
    ],
    ['service GetPolicy', svc, () => svc.policy.unary('GetPolicy', {})],
  ];
  for (const [what, , call] of denied) await expectCode(call(), GrpcCode.PERMISSION_DENIED, what);
  // The operator does day-to-day work.
  await opal.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'by-operator' });
  // An operator cannot be the second admin either.
  const id = await request(alice, { operation: OP.oek });
  await expectCode(
    opal.approvals.unary('ApproveRequest', { approvalId: id }),
    GrpcCode.PERMISSION_DENIED,
    'operator ApproveRequest',
  );
  await alice.approvals.unary('CancelApproval', { approvalId: id });
});

test('SetPolicy under the two-person rule turns on FIPS mode: X-Wing/Ed25519 refused with ALGORITHM_NOT_ALLOWED', async () => {
  const before = (await vic.policy.unary<R>('GetPolicy', {})) as R;
  assert.equal(before.source, 'file');
  assert.equal(before.fipsMode, false);
  assert.equal(before.policySha256, sha(String(before.policyJson)));
  // Before FIPS mode an X-Wing key can be made.
  await svc.keys.unary('CreateKey', { keyId: 'xw-before', algorithm: 'KEY_ALGORITHM_X_WING' });

  const fips = policyText({ fipsMode: true });
  const id = await request(alice, { operation: OP.policy, policySha256: sha(fips), policyJson: fips });
  await expectCode(
    alice.policy.unary('SetPolicy', { policyJson: fips, approvalId: id }),
    GrpcCode.FAILED_PRECONDITION,
    'SetPolicy before approval',
  );
  await bob.approvals.unary('ApproveRequest', { approvalId: id });
  await expectCode(
    alice.policy.unary('SetPolicy', { policyJson: '{"version":1,"rules":[{"id":"x"}]}', approvalId: id }),
    GrpcCode.INVALID_ARGUMENT,
    'SetPolicy with an invalid document (must not consume the approval)',
  );
  await expectApprovalRequired(
    alice.policy.unary('SetPolicy', { policyJson: policyText({ fipsMode: false }), approvalId: id }),
    'SetPolicy with a text other than the approved one',
  );
  assert.notEqual(
    readFileSync(policyFile, 'utf8'),
    fips,
    'refused SetPolicy calls left the policy file alone',
  );
  const set = await alice.policy.unary<R>('SetPolicy', { policyJson: fips, approvalId: id });
  assert.equal(set.policySha256, sha(fips));
  assert.equal(
    readFileSync(policyFile, 'utf8'),
    fips,
    'an approved SetPolicy is written where the daemon loads its policy (survives restarts and SIGHUP)',
  );
  assert.equal(set.previousPolicySha256, before.policySha256);
  const now = await vic.policy.unary<R>('GetPolicy', {});
  assert.deepEqual([now.source, now.fipsMode, now.policySha256], ['api', true, sha(fips)]);

  for (const alg of ['KEY_ALGORITHM_X_WING', 'KEY_ALGORITHM_ED25519']) {
    const e = await expectCode(
      svc.keys.unary('CreateKey', { keyId: `k-${alg.length}`, algorithm: alg }),
      GrpcCode.FAILED_PRECONDITION,
      `FIPS mode CreateKey ${alg}`,
    );
    assert.match(e.details, /algorithm not allowed/, `CreateKey ${alg}: ALGORITHM_NOT_ALLOWED`);
  }
  await expectCode(
    svc.keys.unary('GetPublicKey', { keyId: 'xw-before' }),
    GrpcCode.FAILED_PRECONDITION,
    'FIPS mode refuses using an existing X-Wing key',
  );
  await svc.keys.unary('CreateKey', { keyId: 'mlkem', algorithm: 'KEY_ALGORITHM_ML_KEM_768' });
  await svc.keys.unary('CreateKey', { keyId: 'mldsa', algorithm: 'KEY_ALGORITHM_ML_DSA_65' });
  const ready = JSON.parse((await d.metrics('/readyz')).body) as R;
  assert.equal(ready.fipsMode, true, `/readyz: ${JSON.stringify(ready)}`);
  assert.match((await d.metrics()).body, /^keybroker_fips_mode 1$/m, 'metric keybroker_fips_mode');
});

test('SIGHUP policy reload: a bad file keeps the policy in force, a good one takes effect', async () => {
  const inForce = (await vic.policy.unary<R>('GetPolicy', {})).policySha256;
  const FAILED = 'reload failed; keeping the previous config';
  const failedBefore = d.lines.filter((l) => l.msg === FAILED).length;
  writeFileSync(policyFile, '{"version":1,"rules":[{"id":"broken","effect":"allow"}]}');
  d.proc.kill('SIGHUP');
  await d.waitFor(() => d.lines.filter((l) => l.msg === FAILED).length > failedBefore);
  assert.equal(
    (await vic.policy.unary<R>('GetPolicy', {})).policySha256,
    inForce,
    'bad file: policy unchanged',
  );
  await expectCode(
    vic.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'v3' }),
    GrpcCode.PERMISSION_DENIED,
    'viewer still a viewer after the bad reload',
  );

  // The good file makes vic an operator and leaves FIPS mode off again.
  const good = JSON.stringify({
    version: 1,
    roleBindings: [{ identity: 'spiffe://acme/admin/vic', role: 'operator' }],
    rules: base.rules,
  });
  writeFileSync(policyFile, good);
  d.proc.kill('SIGHUP');
  await d.waitFor((l) => l.msg === 'policy reloaded' && l.digest === sha(good));
  const now = await vic.policy.unary<R>('GetPolicy', {});
  assert.deepEqual([now.policySha256, now.source, now.fipsMode], [sha(good), 'file', false]);
  await vic.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'v3' });
  await svc.keys.unary('CreateKey', { keyId: 'xw-after', algorithm: 'KEY_ALGORITHM_X_WING' });
  assert.match((await d.metrics()).body, /^keybroker_fips_mode 0$/m);

  // The config switch (policy.fipsMode in keybroker.json) turns FIPS mode on at the next SIGHUP,
  // whatever the policy document says.
  const cfgPath = join(d.dataDir, 'keybroker.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as R;
  writeFileSync(
    cfgPath,
    JSON.stringify({ ...cfg, policy: { ...(cfg.policy as R | undefined), fipsMode: true } }),
  );
  d.proc.kill('SIGHUP');
  await d.waitFor((l) => l.msg === 'FIPS mode changed by config reload');
  const e = await expectCode(
    svc.keys.unary('CreateKey', { keyId: 'xw-config', algorithm: 'KEY_ALGORITHM_X_WING' }),
    GrpcCode.FAILED_PRECONDITION,
    'CreateKey X-Wing with config policy.fipsMode',
  );
  assert.match(e.details, /algorithm not allowed/);
  assert.equal((JSON.parse((await d.metrics('/readyz')).body) as R).fipsMode, true);
  assert.equal(
    (await vic.policy.unary<R>('GetPolicy', {})).fipsMode,
    true,
    'GetPolicy shows config FIPS mode',
  );
});

test('CLI: admin approval request/approve/list/cancel and --approval-id on tenant destroy', async () => {
  await alice.admin.unary('CreateTenant', { org: 'acme', tenant: 'cli-doomed' });
  const kb = (who: string, args: string[]) => {
    const r = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'daemon/src/cli/main.ts'),
        'admin',
        ...args,
        '--data-dir',
        d.dataDir,
        ...(certArgs[who] ?? []),
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return { status: r.status, out: r.stdout, err: r.stderr };
  };
  const denied = kb('alice', ['tenant', 'destroy', 'acme', 'cli-doomed']);
  assert.equal(denied.status, 1, 'destroy without --approval-id fails');
  assert.match(denied.err, /FAILED_PRECONDITION: approval by a second admin required/);
  const req = kb('alice', ['approval', 'request', 'destroy-tenant', 'acme', 'cli-doomed']);
  assert.equal(req.status, 0, req.err);
  const id = String(((JSON.parse(req.out) as R).approval as R).approvalId);
  const self = kb('alice', ['approval', 'approve', id]);
  assert.equal(self.status, 1, 'self-approval through the CLI fails');
  assert.match(self.err, /PERMISSION_DENIED/);
  const ok = kb('bob', ['approval', 'approve', id]);
  assert.equal(ok.status, 0, ok.err);
  const pending = kb('bob', ['approval', 'list', 'acme', '--status', 'approved']);
  assert.ok(
    ((JSON.parse(pending.out) as R).approvals as R[]).some((a) => a.approvalId === id),
    'list --status approved shows it',
  );
  const done = kb('alice', ['tenant', 'destroy', 'acme', 'cli-doomed', '--approval-id', id]);
  assert.equal(done.status, 0, done.err);
  assert.ok((JSON.parse(done.out) as R).receipt !== undefined, 'destroy prints the receipt');
  const other2 = kb('alice', ['approval', 'request', 'rotate-org-key', 'acme']);
  const id2 = String(((JSON.parse(other2.out) as R).approval as R).approvalId);
  const cancel = kb('bob', ['approval', 'cancel', id2]);
  assert.equal(cancel.status, 0, cancel.err);
  assert.equal(((JSON.parse(cancel.out) as R).approval as R).status, 'APPROVAL_STATUS_CANCELLED');
  const pol = kb('bob', ['policy', 'get']);
  assert.equal(pol.status, 0, pol.err);
  assert.match(String((JSON.parse(pol.out) as R).policySha256), /^[0-9a-f]{64}$/);
});
