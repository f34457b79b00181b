/**
 * Every Admin RPC against the real daemon as an admin identity (spiffe://<org>/admin/<name>),
 * including crypto-shredding with a receipt verified offline; and who may call what: services
 * cannot administer, admins cannot use the data plane, an admin of another org is refused.
 */
import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let admin: KeybrokerClient;

before(async () => {
  d = await startDaemon();
  admin = d.client('admin');
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const A = (m: string, req: object = {}) => admin.admin.unary<R>(m, req);
const key = (r: R, field: string) => (r[field] as R).key as R;

test("orgs: CreateOrg (by that org's admin), ListOrgs, DescribeOrg, SetOrgEnabled, RotateOrgKey", async () => {
  const other = d.client(await d.issueClient('spiffe://neworg/admin/ops'));
  const created = await other.admin.unary<R>('CreateOrg', { org: 'neworg' });
  assert.equal((created.org as R).org, 'neworg');
  await expectCode(
    other.admin.unary('CreateOrg', { org: 'neworg' }),
    GrpcCode.ALREADY_EXISTS,
    'CreateOrg twice',
  );
  const list = await A('ListOrgs');
  assert.deepEqual(
    (list.orgs as R[]).map((o) => o.org),
    ['acme'],
    'ListOrgs shows the caller org only',
  );
  const desc = await A('DescribeOrg', { org: 'acme' });
  assert.equal(key(desc, 'org').level, 'KEY_LEVEL_ORG');
  assert.equal(((await A('SetOrgEnabled', { org: 'acme', enabled: false })).org as R).enabled, false);
  assert.equal(((await A('SetOrgEnabled', { org: 'acme', enabled: true })).org as R).enabled, true);
  const rotated = await A('RotateOrgKey', { org: 'acme' });
  assert.equal(key(rotated, 'org').primaryVersion, 2, 'RotateOrgKey primary version');
});

test('tenants and customers: create, list, describe, enable/disable, rotate, key policy, key versions', async () => {
  const t = await A('CreateTenant', { org: 'acme', tenant: 'beta', policy: { usageLimit: 1000 } });
  assert.equal(key(t, 'tenant').level, 'KEY_LEVEL_TENANT');
  assert.equal((key(t, 'tenant').policy as R).usageLimit, 1000, 'CreateTenant policy applied');
  await expectCode(
    A('CreateTenant', { org: 'acme', tenant: 'admin' }),
    GrpcCode.INVALID_ARGUMENT,
    'reserved tenant name',
  );
  const tenants = ((await A('ListTenants', { org: 'acme' })).tenants as R[]).map((x) => x.tenant).sort();
  assert.deepEqual(tenants, ['alpha', 'beta']);
  assert.equal(((await A('DescribeTenant', { org: 'acme', tenant: 'beta' })).tenant as R).tenant, 'beta');
  assert.equal(
    ((await A('SetTenantEnabled', { org: 'acme', tenant: 'beta', enabled: false })).tenant as R).enabled,
    false,
  );
  assert.equal(
    ((await A('SetTenantEnabled', { org: 'acme', tenant: 'beta', enabled: true })).tenant as R).enabled,
    true,
  );
  assert.equal(key(await A('RotateTenantKey', { org: 'acme', tenant: 'beta' }), 'tenant').primaryVersion, 2);

  const c = await A('CreateCustomer', { org: 'acme', tenant: 'beta', customer: 'carol' });
  assert.equal((c.customer as R).customer, 'carol');
  const customers = ((await A('ListCustomers', { org: 'acme', tenant: 'beta' })).customers as R[]).map(
    (x) => x.customer,
  );
  assert.ok(
    customers.includes('carol') && customers.includes('default'),
    `ListCustomers: ${customers.join(',')}`,
  );
  assert.equal(
    ((await A('DescribeCustomer', { org: 'acme', tenant: 'beta', customer: 'carol' })).customer as R).enabled,
    true,
  );
  const dis = await A('SetCustomerEnabled', {
    org: 'acme',
    tenant: 'beta',
    customer: 'carol',
    enabled: false,
  });
  assert.equal((dis.customer as R).enabled, false);
  await A('SetCustomerEnabled', { org: 'acme', tenant: 'beta', customer: 'carol', enabled: true });
  const rc = await A('RotateCustomerKey', { org: 'acme', tenant: 'beta', customer: 'carol' });
  assert.equal(key(rc, 'customer').primaryVersion, 2);

  const pol = await A('SetKeyPolicy', {
    org: 'acme',
    tenant: 'beta',
    customer: 'carol',
    policy: { rotationPeriodSeconds: 86400, minDecryptVersion: 1 },
  });
  assert.equal(((pol.key as R).policy as R).rotationPeriodSeconds, 86400, 'SetKeyPolicy rotation period');
  const kv = await A('SetKeyVersionEnabled', {
    org: 'acme',
    tenant: 'beta',
    customer: 'carol',
    version: 1,
    enabled: false,
  });
  const v1 = ((kv.key as R).versions as R[]).find((v) => v.version === 1);
  assert.equal(v1?.state, 'KEY_VERSION_STATE_DISABLED', 'SetKeyVersionEnabled v1 disabled');
  const due = await A('RotateDueKeys');
  assert.equal(typeof due.rotated, 'number');
  await expectCode(
    A('DescribeTenant', { org: 'acme', tenant: 'nope' }),
    GrpcCode.NOT_FOUND,
    'DescribeTenant unknown',
  );
});

test('DestroyCustomer and DestroyTenant return receipts that verify offline; the tenant is gone', async () => {
  await A('CreateTenant', { org: 'acme', tenant: 'doomed' });
  await A('CreateCustomer', { org: 'acme', tenant: 'doomed', customer: 'dave' });
  const svc = d.client(await d.issueClient('spiffe://acme/doomed/app'));
  const ct = await svc.crypto.unary<R>('Encrypt', {
    customer: 'dave',
    plaintext: Buffer.from('bye'),
    aad: Buffer.alloc(0),
  });
  for (const [rpc, req] of [
    ['DestroyCustomer', { org: 'acme', tenant: 'doomed', customer: 'dave' }],
    ['DestroyTenant', { org: 'acme', tenant: 'doomed' }],
  ] as const) {
    const r = (await A(rpc, req)).receipt as R;
    assert.equal(r.signatureAlgorithm, 'ecdsa-p256-sha256', `${rpc} receipt algorithm`);
    const ok = verify(
      'sha256',
      Buffer.from(r.body as string),
      r.publicKeyPem as string,
      Buffer.from(r.signature as string, 'base64'),
    );
    assert.ok(ok, `${rpc}: receipt signature must verify offline`);
    assert.ok(JSON.parse(r.body as string), `${rpc}: receipt body is JSON`);
  }
  await expectCode(
    A('DescribeTenant', { org: 'acme', tenant: 'doomed' }),
    GrpcCode.NOT_FOUND,
    'destroyed tenant',
  );
  const e = await svc.crypto.unary('Decrypt', { ciphertext: ct.ciphertext, aad: Buffer.alloc(0) }).then(
    () => undefined,
    (err: { code: number }) => err,
  );
  assert.ok(e !== undefined && e.code !== GrpcCode.OK, 'Decrypt after DestroyTenant must fail');
});

test('authorisation: services cannot administer, admins cannot encrypt, other orgs are refused', async () => {
  const svc = d.client('service');
  await expectCode(
    svc.admin.unary('ListTenants', { org: 'acme' }),
    GrpcCode.PERMISSION_DENIED,
    'service -> Admin',
  );
  await expectCode(
    admin.crypto.unary('Encrypt', { plaintext: Buffer.from('x'), aad: Buffer.alloc(0) }),
    GrpcCode.PERMISSION_DENIED,
    'admin -> Crypto',
  );
  const foreign = d.client(await d.issueClient('spiffe://evilcorp/admin/mallory'));
  for (const [rpc, req] of [
    ['DescribeOrg', { org: 'acme' }],
    ['ListTenants', { org: 'acme' }],
    ['DestroyTenant', { org: 'acme', tenant: 'alpha' }],
    ['RotateOrgKey', { org: 'acme' }],
  ] as const) {
    await expectCode(
      foreign.admin.unary(rpc, req),
      GrpcCode.PERMISSION_DENIED,
      `admin of another org -> ${rpc}`,
    );
  }
  // alpha is untouched.
  assert.equal(((await A('DescribeTenant', { org: 'acme', tenant: 'alpha' })).tenant as R).enabled, true);
});
