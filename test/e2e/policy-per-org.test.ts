/**
 * Policy per org (review M6, L8) in the real daemon over gRPC + mTLS with the two-person rule on:
 * an org's admins read and replace only their org's section; another org's two admins can neither
 * read acme's rules nor change them (a document naming acme is refused before any approval); only
 * the operator org changes daemon-wide settings; RotateDueKeys rotates only the caller's org.
 * And (issue item 5) SetPolicy and RequestApproval(set-policy) validate the document first.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const sha = (t: string) => createHash('sha256').update(t, 'utf8').digest('hex');
const SET_POLICY = 'APPROVAL_OPERATION_SET_POLICY';
const aad = Buffer.alloc(0);

let d: DaemonHandle;
let alice: KeybrokerClient;
let bob: KeybrokerClient;
let bea: KeybrokerClient;
let ben: KeybrokerClient;
let olive: KeybrokerClient;
let oscar: KeybrokerClient;
let app: KeybrokerClient;

before(async () => {
  const dir = await initTestDataDir({ org: 'acme', tenant: 'alpha' });
  d = await startDaemon({
    dataDir: dir,
    twoPersonRule: true,
    env: { KB_POLICY_OPERATOR_ORG: 'ops', KB_POLICY_APPROVAL_WINDOW_MS: '600000' },
  });
  const c = async (uri: string) => d.client(await d.issueClient(uri));
  alice = await c('spiffe://acme/admin/alice');
  bob = await c('spiffe://acme/admin/bob');
  bea = await c('spiffe://beta/admin/bea');
  ben = await c('spiffe://beta/admin/ben');
  olive = await c('spiffe://ops/admin/olive');
  oscar = await c('spiffe://ops/admin/oscar');
  app = d.client('service');
  await bea.admin.unary('CreateOrg', { org: 'beta' });
  await bea.admin.unary('CreateTenant', { org: 'beta', tenant: 'b1' });
  await alice.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'c9' });
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

/** Request (by `a`), approve (by `b`) and apply `text` as `a`'s policy. */
async function setPolicy(a: KeybrokerClient, b: KeybrokerClient, org: string, text: string): Promise<R> {
  const r = await a.approvals.unary<R>('RequestApproval', { operation: SET_POLICY, org, policyJson: text });
  const id = String((r.approval as R).approvalId);
  await b.approvals.unary('ApproveRequest', { approvalId: id });
  return a.policy.unary<R>('SetPolicy', { policyJson: text, approvalId: id });
}

const ACME_SECTION = JSON.stringify({
  version: 1,
  rules: [
    {
      id: 'no-c9',
      effect: 'deny',
      identities: ['spiffe://acme/alpha/*'],
      rpcs: ['keybroker.v1.Crypto/*'],
      customers: ['c9'],
    },
  ],
  roleBindings: [{ identity: 'spiffe://acme/admin/bob', role: 'admin' }],
});

test("acme's admins set acme's section; it applies to acme's services; GetPolicy shows it to acme only", async () => {
  await app.crypto.unary('Encrypt', { customer: 'c9', plaintext: Buffer.from('x'), aad });
  const set = await setPolicy(alice, bob, 'acme', ACME_SECTION);
  assert.equal(set.policySha256, sha(ACME_SECTION));
  await expectCode(
    app.crypto.unary('Encrypt', { customer: 'c9', plaintext: Buffer.from('x'), aad }),
    GrpcCode.PERMISSION_DENIED,
    "Encrypt for c9 under acme's section",
  );
  await app.crypto.unary('Encrypt', { customer: 'default', plaintext: Buffer.from('x'), aad });
  const mine = await alice.policy.unary<R>('GetPolicy', {});
  assert.deepEqual([mine.policyJson, mine.source], [ACME_SECTION, 'api']);
  assert.ok(existsSync(join(d.dataDir, 'policy.d/acme.json')), 'the section is persisted');
  assert.equal(readFileSync(join(d.dataDir, 'policy.d/acme.json'), 'utf8'), ACME_SECTION);
});

test("beta's two admins can neither read nor change acme's rules", async () => {
  const theirs = await bea.policy.unary<R>('GetPolicy', {});
  assert.doesNotMatch(String(theirs.policyJson), /acme|no-c9/, "beta's GetPolicy shows nothing of acme");
  assert.equal(theirs.source, 'default');
  // Documents reaching into acme: rules, ceilings, role bindings, org lists, daemon-wide settings.
  const attempts: [string, R][] = [
    [
      'a rule for acme identities',
      { rules: [{ id: 'x', effect: 'allow', identities: ['spiffe://acme/**'], rpcs: ['**'] }] },
    ],
    [
      'a rule for every identity',
      { rules: [{ id: 'x', effect: 'allow', identities: ['**'], rpcs: ['**'] }] },
    ],
    [
      'a ceiling on an acme tenant',
      { rules: [], tenants: [{ org: 'acme', tenant: 'alpha', rpcs: ['none'] }] },
    ],
    [
      'rebinding an acme admin',
      { rules: [], roleBindings: [{ identity: 'spiffe://acme/admin/*', role: 'viewer' }] },
    ],
    [
      'a rule naming org acme',
      {
        rules: [{ id: 'x', effect: 'deny', identities: ['spiffe://beta/**'], rpcs: ['**'], orgs: ['acme'] }],
      },
    ],
    ['FIPS mode off/on (daemon-wide)', { rules: [], fipsMode: true }],
    ['adminRpcRoles (daemon-wide)', { rules: [], adminRpcRoles: { 'keybroker.v1.Admin/ListOrgs': 'admin' } }],
  ];
  for (const [what, doc] of attempts) {
    const text = JSON.stringify({ version: 1, ...doc });
    const e = await expectCode(
      bea.approvals.unary('RequestApproval', { operation: SET_POLICY, org: 'beta', policyJson: text }),
      GrpcCode.INVALID_ARGUMENT,
      `RequestApproval: ${what}`,
    );
    assert.match(e.details, /may only concern org "beta"/, `${what}: the reason`);
    await expectCode(
      bea.policy.unary('SetPolicy', { policyJson: text, approvalId: 'apr-00000000000000000000' }),
      GrpcCode.INVALID_ARGUMENT,
      `SetPolicy: ${what}`,
    );
  }
  const listed = (await ben.approvals.unary<R>('ListApprovals', { org: 'beta' })).approvals as
    R[] | undefined;
  assert.equal(listed?.length ?? 0, 0, 'no approval was created for a refused document');
  // A section confined to beta is fine, and acme's rule stays in force.
  const own = JSON.stringify({
    version: 1,
    rules: [
      { id: 'b-deny', effect: 'deny', identities: ['spiffe://beta/b1/*'], rpcs: ['keybroker.v1.Keys/*'] },
    ],
  });
  await setPolicy(bea, ben, 'beta', own);
  assert.equal((await ben.policy.unary<R>('GetPolicy', {})).policyJson, own);
  assert.equal(
    (await alice.policy.unary<R>('GetPolicy', {})).policyJson,
    ACME_SECTION,
    "acme's section unchanged",
  );
  await expectCode(
    app.crypto.unary('Encrypt', { customer: 'c9', plaintext: Buffer.from('x'), aad }),
    GrpcCode.PERMISSION_DENIED,
    "acme's rule still in force after beta's change",
  );
});

test('only the operator org changes daemon-wide settings; its GetPolicy is the daemon-wide document', async () => {
  const base = await olive.policy.unary<R>('GetPolicy', {});
  assert.equal(base.source, 'default');
  assert.match(String(base.policyJson), /default\/data-plane/);
  const fips = JSON.stringify({ ...(JSON.parse(String(base.policyJson)) as R), fipsMode: true });
  await setPolicy(olive, oscar, 'ops', fips);
  assert.equal((await alice.policy.unary<R>('GetPolicy', {})).fipsMode, true, 'FIPS mode is daemon-wide');
  await expectCode(
    app.keys.unary('CreateKey', { keyId: 'xw', algorithm: 'KEY_ALGORITHM_X_WING' }),
    GrpcCode.FAILED_PRECONDITION,
    'X-Wing under FIPS mode',
  );
});

test('item 5: an invalid document is INVALID_ARGUMENT before any approval is asked for or made', async () => {
  const bad = '{"version":1,"rules":[{"id":"x","effect":"allow"}]}';
  const e = await expectCode(
    alice.policy.unary('SetPolicy', { policyJson: bad }),
    GrpcCode.INVALID_ARGUMENT,
    'SetPolicy of an invalid document without an approval id',
  );
  assert.match(e.details, /policy\.rules\.0/, 'the reason names the field');
  const r = await expectCode(
    alice.approvals.unary('RequestApproval', { operation: SET_POLICY, org: 'acme', policyJson: bad }),
    GrpcCode.INVALID_ARGUMENT,
    'RequestApproval of an invalid document',
  );
  assert.match(r.details, /policy\.rules\.0/);
  await expectCode(
    alice.approvals.unary('RequestApproval', { operation: SET_POLICY, org: 'acme', policySha256: sha(bad) }),
    GrpcCode.INVALID_ARGUMENT,
    'RequestApproval naming only a digest (the document is needed to validate it)',
  );
  const good = ACME_SECTION;
  await expectCode(
    alice.approvals.unary('RequestApproval', {
      operation: SET_POLICY,
      org: 'acme',
      policyJson: good,
      policySha256: sha(bad),
    }),
    GrpcCode.INVALID_ARGUMENT,
    'RequestApproval whose digest is not the document',
  );
  const pending = ((await bob.approvals.unary<R>('ListApprovals', { org: 'acme' })).approvals ?? []) as R[];
  assert.equal(
    pending.filter((a) => a.status === 'APPROVAL_STATUS_PENDING').length,
    0,
    'no approval was created',
  );
});

test("RotateDueKeys by beta's admin leaves acme's due keys alone; acme's rotates them", async () => {
  await alice.admin.unary('CreateTenant', {
    org: 'acme',
    tenant: 'due',
    policy: { rotationPeriodSeconds: 1 },
  });
  await bea.admin.unary('CreateTenant', {
    org: 'beta',
    tenant: 'bdue',
    policy: { rotationPeriodSeconds: 1 },
  });
  await new Promise((r) => setTimeout(r, 1300));
  const primary = async (c: KeybrokerClient, org: string, tenant: string) =>
    (((await c.admin.unary<R>('DescribeTenant', { org, tenant })).tenant as R).key as R).primaryVersion;
  await bea.admin.unary('RotateDueKeys', {});
  assert.equal(await primary(bea, 'beta', 'bdue'), 2, "beta's due tenant key rotated");
  assert.equal(await primary(alice, 'acme', 'due'), 1, "acme's due tenant key untouched by beta");
  await alice.admin.unary('RotateDueKeys', {});
  assert.equal(await primary(alice, 'acme', 'due'), 2, "acme's own RotateDueKeys rotates it");
});
