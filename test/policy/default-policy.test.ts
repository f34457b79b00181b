// The built-in policy: own tenant for services, own org for admins, nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import type { CallerIdentity } from '../../daemon/src/policy/authorizer.ts';
import { defaultPolicy } from '../../daemon/src/policy/default-policy.ts';
import { PolicyEngine } from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { allRpcs, caller } from './policy-fixtures.ts';

const engine = new PolicyEngine(new PolicyStore(defaultPolicy()));
const svc = caller('spiffe://acme/t1/svc');
const admin = caller('spiffe://acme/admin/alice', ['admin']);
const viewer = caller('spiffe://acme/admin/vic', ['viewer']);
const at = (who: CallerIdentity, rpc: string, org: string, tenant?: string) =>
  engine.authorize({
    identity: who,
    rpc,
    org: org as OrgId,
    ...(tenant ? { tenant: tenant as TenantId } : {}),
  });

describe('default policy', () => {
  for (const rpc of allRpcs()) {
    const data = ['Crypto', 'Keys', 'BlindIndexes', 'Secrets'].some((s) =>
      rpc.startsWith(`keybroker.v1.${s}/`),
    );
    // Services renew their own certificate and read their org's CA (the service checks whose).
    const certSelf = [
      'keybroker.v1.Certificates/IssueCertificate',
      'keybroker.v1.Certificates/GetCa',
    ].includes(rpc);
    it(`${rpc}`, () => {
      assert.equal(at(svc, rpc, 'acme', 't1').allow, data || certSelf, `tenant service on own tenant`);
      assert.equal(at(svc, rpc, 'acme', 't2').allow, false, 'tenant service on another tenant');
      assert.equal(at(admin, rpc, 'acme', 't1').allow, !data, 'org admin on own org');
      assert.equal(at(admin, rpc, 'globex', 't1').allow, false, 'org admin on another org');
    });
  }
  it('viewer admin: read-only Admin RPCs only', () => {
    assert.equal(at(viewer, 'keybroker.v1.Admin/ListTenants', 'acme').allow, true);
    assert.equal(at(viewer, 'keybroker.v1.Admin/DestroyTenant', 'acme', 't1').allow, false);
    assert.equal(at(viewer, 'keybroker.v1.Admin/ListBlindIndexes', 'acme', 't1').allow, true);
    assert.equal(at(viewer, 'keybroker.v1.Admin/CreateBlindIndex', 'acme', 't1').allow, false);
  });
});
