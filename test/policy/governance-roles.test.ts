// The daemon's additions to the policy engine: FIPS mode forced by the config whatever the
// document says, and the role table for the Approvals and Policy services (every control-plane
// RPC in the protos has a role; nothing outside them does).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import { requiredRole } from '../../daemon/src/policy/admin-roles.ts';
import { defaultPolicy } from '../../daemon/src/policy/default-policy.ts';
import { PolicyEngine } from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { allRpcs, caller } from './policy-fixtures.ts';

const svc = caller('spiffe://acme/t1/svc');
const keyCall = (algorithm: string) => ({
  identity: svc,
  rpc: 'keybroker.v1.Keys/CreateKey',
  org: 'acme' as OrgId,
  tenant: 't1' as TenantId,
  algorithm,
});

describe('FIPS mode from the daemon config', () => {
  const plain = new PolicyEngine(new PolicyStore(defaultPolicy()));
  const forced = new PolicyEngine(new PolicyStore(defaultPolicy()), { fipsMode: true });
  const cases: [string, boolean, string | undefined][] = [
    ['x-wing', false, 'ALGORITHM_NOT_ALLOWED'],
    ['ed25519', false, 'ALGORITHM_NOT_ALLOWED'],
    ['chacha20-poly1305', false, 'ALGORITHM_NOT_ALLOWED'],
    ['ml-kem-768', true, undefined],
    ['ml-dsa-65', true, undefined],
    ['ecdsa-p256', true, undefined],
  ];
  for (const [alg, allow, code] of cases) {
    it(`${alg}: ${allow ? 'allowed' : code}`, () => {
      assert.equal(plain.authorize(keyCall(alg)).allow, true, `${alg} without FIPS mode`);
      const d = forced.authorize(keyCall(alg));
      assert.equal(d.allow, allow, `${alg} with config fipsMode: ${d.reason}`);
      assert.equal(d.code, code, `${alg}: decision code`);
    });
  }
  it('fipsMode getter: config OR document', () => {
    assert.equal(plain.fipsMode, false);
    assert.equal(forced.fipsMode, true);
  });
  it('PolicyStore reports text and origin', () => {
    const s = new PolicyStore(defaultPolicy(), '{}');
    assert.equal(s.origin(), 'default');
    s.replace('{"version":1,"rules":[]}');
    assert.deepEqual([s.origin(), s.text()], ['api', '{"version":1,"rules":[]}']);
    assert.throws(() => s.replace('{"version":2}'));
    assert.deepEqual(
      [s.origin(), s.text()],
      ['api', '{"version":1,"rules":[]}'],
      'bad text keeps the old one',
    );
  });
});

describe('role table', () => {
  const want: Record<string, string> = {
    'keybroker.v1.Approvals/ListApprovals': 'viewer',
    'keybroker.v1.Approvals/RequestApproval': 'admin',
    'keybroker.v1.Approvals/ApproveRequest': 'admin',
    'keybroker.v1.Approvals/CancelApproval': 'admin',
    'keybroker.v1.Policy/GetPolicy': 'viewer',
    'keybroker.v1.Policy/SetPolicy': 'admin',
    'keybroker.v1.Admin/DestroyTenant': 'admin',
    'keybroker.v1.Admin/RotateTenantKey': 'operator',
  };
  for (const rpc of allRpcs()) {
    it(rpc, () => {
      const control = /^keybroker\.v1\.(Admin|Approvals|Policy)\//.test(rpc);
      const role = requiredRole(rpc);
      assert.equal(role !== undefined, control, `${rpc}: role ${role}`);
      if (want[rpc] !== undefined) assert.equal(role, want[rpc], rpc);
    });
  }
});
