// PolicyEngine remembers decisions per (compiled policy, identity object): the remembered answer
// must always be the one evaluatePolicy gives, also after a policy swap, for other identities, for
// every target field, and once the per-identity memory has started over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import type { AuthzRequest } from '../../daemon/src/policy/authorizer.ts';
import { loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import { PolicyEngine, evaluatePolicy } from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { BASE_POLICY, allRpcs, caller } from '../policy/policy-fixtures.ts';

const ENCRYPT = 'keybroker.v1.Crypto/Encrypt';
const t1 = caller('spiffe://acme/t1/svc');
const t2 = caller('spiffe://acme/t2/svc');
const admin = caller('spiffe://acme/admin/alice', ['admin']);

const req = (who: typeof t1, rpc: string, extra: Partial<AuthzRequest> = {}): AuthzRequest => ({
  identity: who,
  rpc,
  org: 'acme' as OrgId,
  ...(who.tenant !== undefined ? { tenant: who.tenant } : {}),
  ...extra,
});

/** Ask twice (the second answer comes from memory) and compare both with a fresh evaluation. */
function same(engine: PolicyEngine, store: PolicyStore, r: AuthzRequest, what: string): void {
  const want = evaluatePolicy(store.current(), r);
  for (const round of ['first', 'remembered']) {
    const got = engine.authorize(r);
    assert.deepEqual(
      { allow: got.allow, rule: got.rule, code: got.code },
      { allow: want.allow, rule: want.rule, code: want.code },
      `${what} (${round}): authorize gave ${JSON.stringify(got)}, evaluatePolicy ${JSON.stringify(want)}`,
    );
  }
}

test('remembered decisions equal evaluatePolicy for every RPC, identity and target field', () => {
  const store = new PolicyStore(loadPolicy(JSON.stringify(BASE_POLICY)));
  const engine = new PolicyEngine(store);
  const targets: [string, Partial<AuthzRequest>][] = [
    ['own tenant', {}],
    ['other tenant', { tenant: 't2' as TenantId }],
    ['other org', { org: 'evil' as OrgId }],
    ['customer', { customer: 'alice' as CustomerId }],
    ['other customer', { customer: 'bob' as CustomerId }],
    ['algorithm', { algorithm: 'ML-KEM-768' }],
    ['key name', { keyName: 'k1' }],
  ];
  for (const rpc of allRpcs())
    for (const who of [t1, t2, admin])
      for (const [name, extra] of targets)
        same(engine, store, req(who, rpc, extra), `${who.uri} ${rpc} ${name}`);
});

test('a policy swap is seen at once: decisions are remembered per compiled policy', () => {
  const store = new PolicyStore(loadPolicy(JSON.stringify(BASE_POLICY)));
  const engine = new PolicyEngine(store);
  const r = req(t1, ENCRYPT, { customer: 'default' as CustomerId });
  const before = engine.authorize(r);
  assert.equal(
    before.allow,
    true,
    `t1 Encrypt for customer default is allowed, got ${JSON.stringify(before)}`,
  );
  store.replace(JSON.stringify({ version: 1, rules: [] }));
  const after = engine.authorize(r);
  assert.equal(
    after.allow,
    false,
    `after swapping to an empty policy Encrypt must be denied, got ${JSON.stringify(after)}`,
  );
  assert.notDeepEqual(after, before, 'the decision changed with the policy');
  same(engine, store, r, 'after the swap');
});

test('identities are told apart even with equal URIs in different objects, and memory that starts over stays right', () => {
  const store = new PolicyStore(loadPolicy(JSON.stringify(BASE_POLICY)));
  const engine = new PolicyEngine(store);
  // Same URI, different roles: a remembered decision of one object must not answer for the other.
  const plain = caller('spiffe://acme/admin/olga');
  const withRole = caller('spiffe://acme/admin/olga', ['admin']);
  const rpc = 'keybroker.v1.Admin/CreateTenant';
  same(engine, store, req(plain, rpc), 'admin without role');
  same(engine, store, req(withRole, rpc), 'admin with role');
  same(engine, store, req(plain, rpc), 'admin without role again');
  // More distinct targets than one identity's memory holds: every answer is still evaluated right.
  for (let i = 0; i < 700; i++)
    same(engine, store, req(t1, ENCRYPT, { customer: `c${i}` as CustomerId }), `customer c${i}`);
});
