// The policy engine as a table of (identity, call) -> decision, plus fail-closed and cross-tenant
// cases for every RPC the protos declare.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import type { AuthzRequest, CallerIdentity } from '../../daemon/src/policy/authorizer.ts';
import { loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import type { Policy } from '../../daemon/src/policy/policy-document.ts';
import {
  PolicyEngine,
  decisionError,
  effectiveRole,
  evaluatePolicy,
} from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { ALLOW_ALL_POLICY, BASE_POLICY, allRpcs, caller } from './policy-fixtures.ts';

const base = loadPolicy(JSON.stringify(BASE_POLICY));
const fips = loadPolicy(JSON.stringify({ ...BASE_POLICY, fipsMode: true }));

interface Case {
  name: string;
  who: CallerIdentity;
  rpc: string;
  tenant?: string;
  org?: string;
  customer?: string;
  algorithm?: string;
  policy?: Policy;
  want: { allow: boolean; rule: string; code?: string };
}

const t1svc = caller('spiffe://acme/t1/svc');
const t1billing = caller('spiffe://acme/t1/billing');
const t2svc = caller('spiffe://acme/t2/svc');
const alice = caller('spiffe://acme/admin/alice');
const olga = caller('spiffe://acme/admin/olga');
const vic = caller('spiffe://acme/admin/vic');
const mallory = caller('spiffe://acme/admin/mallory');
const C = 'keybroker.v1.Crypto/';
const A = 'keybroker.v1.Admin/';

const cases: Case[] = [
  {
    name: 't1 service encrypts for the default customer',
    who: t1svc,
    rpc: `${C}Encrypt`,
    tenant: 't1',
    customer: 'default',
    algorithm: 'AES-256-GCM',
    want: { allow: true, rule: 't1-crypto' },
  },
  {
    name: 't1 service, customer outside its list',
    who: t1svc,
    rpc: `${C}Encrypt`,
    tenant: 't1',
    customer: 'c2',
    want: { allow: false, rule: 'no-match' },
  },
  {
    name: 't1 call without a customer does not match a customer-limited rule',
    who: t1svc,
    rpc: `${C}Encrypt`,
    tenant: 't1',
    want: { allow: false, rule: 'no-match' },
  },
  {
    name: 'first deny wins over a matching allow',
    who: t1billing,
    rpc: `${C}Decrypt`,
    tenant: 't1',
    customer: 'default',
    want: { allow: false, rule: 't1-billing-no-decrypt' },
  },
  {
    name: 'deny glob covers DecryptBatch too',
    who: t1billing,
    rpc: `${C}DecryptBatch`,
    tenant: 't1',
    customer: 'default',
    want: { allow: false, rule: 't1-billing-no-decrypt' },
  },
  {
    name: 'the denied identity may still encrypt',
    who: t1billing,
    rpc: `${C}Encrypt`,
    tenant: 't1',
    customer: 'c1',
    want: { allow: true, rule: 't1-crypto' },
  },
  {
    name: "tenant ceiling refuses an algorithm outside t1's list",
    who: t1svc,
    rpc: `${C}Encrypt`,
    tenant: 't1',
    customer: 'default',
    algorithm: 'ChaCha20-Poly1305',
    want: { allow: false, rule: 'tenant:acme/t1' },
  },
  {
    name: 't2 has no ceiling: any algorithm',
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    customer: 'x',
    algorithm: 'ChaCha20-Poly1305',
    want: { allow: true, rule: 't2-crypto' },
  },
  {
    name: 'a tenant service may not call Admin',
    who: t1svc,
    rpc: `${A}CreateCustomer`,
    tenant: 't1',
    want: { allow: false, rule: 'role:operator' },
  },
  {
    name: 'admin creates a tenant',
    who: alice,
    rpc: `${A}CreateTenant`,
    tenant: 't9',
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'admin destroys a tenant (role check passes; two-person rule is separate)',
    who: alice,
    rpc: `${A}DestroyTenant`,
    tenant: 't1',
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'operator rotates a tenant key',
    who: olga,
    rpc: `${A}RotateTenantKey`,
    tenant: 't1',
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'a role binding caps an admin certificate (daemon gives admin URIs the admin role)',
    who: caller('spiffe://acme/admin/olga', ['admin']),
    rpc: `${A}DestroyTenant`,
    tenant: 't1',
    want: { allow: false, rule: 'role:admin' },
  },
  {
    name: 'operator may not destroy a tenant',
    who: olga,
    rpc: `${A}DestroyTenant`,
    tenant: 't1',
    want: { allow: false, rule: 'role:admin' },
  },
  {
    name: 'operator may not rotate the org root key',
    who: olga,
    rpc: `${A}RotateOrgKey`,
    want: { allow: false, rule: 'role:admin' },
  },
  {
    name: 'viewer lists tenants',
    who: vic,
    rpc: `${A}ListTenants`,
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'viewer may not create a customer',
    who: vic,
    rpc: `${A}CreateCustomer`,
    tenant: 't1',
    want: { allow: false, rule: 'role:operator' },
  },
  {
    name: 'admin identity without any role binding',
    who: mallory,
    rpc: `${A}ListTenants`,
    want: { allow: false, rule: 'role:viewer' },
  },
  {
    name: 'role from the certificate counts',
    who: caller('spiffe://acme/admin/cert', ['admin']),
    rpc: `${A}DestroyCustomer`,
    tenant: 't1',
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'unknown Admin method needs admin (operator refused)',
    who: olga,
    rpc: `${A}SomeFutureMethod`,
    want: { allow: false, rule: 'role:admin' },
  },
  {
    name: 'unknown Admin method, admin allowed by glob',
    who: alice,
    rpc: `${A}SomeFutureMethod`,
    want: { allow: true, rule: 'acme-admins' },
  },
  {
    name: 'an RPC no rule names',
    who: t2svc,
    rpc: 'keybroker.v1.Keys/Sign',
    tenant: 't2',
    want: { allow: false, rule: 'no-match' },
  },
  {
    name: 'identity URI names another tenant than its tenant field',
    who: { ...t1svc, uri: 'spiffe://acme/t2/svc' },
    rpc: `${C}Encrypt`,
    tenant: 't1',
    customer: 'default',
    want: { allow: false, rule: 'structural:identity' },
  },
  {
    name: 'identity URI names another org than its org field',
    who: { ...alice, uri: 'spiffe://globex/admin/alice' },
    rpc: `${A}ListTenants`,
    want: { allow: false, rule: 'structural:identity' },
  },
  {
    name: 'malformed request (empty rpc)',
    who: t1svc,
    rpc: '',
    tenant: 't1',
    want: { allow: false, rule: 'structural:malformed' },
  },
  {
    name: 'FIPS: AES-256-GCM allowed',
    policy: fips,
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'AES-256-GCM',
    want: { allow: true, rule: 't2-crypto' },
  },
  {
    name: 'FIPS: X-Wing refused',
    policy: fips,
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'X-Wing',
    want: { allow: false, rule: 'fips', code: 'ALGORITHM_NOT_ALLOWED' },
  },
  {
    name: 'FIPS: ChaCha20-Poly1305 refused',
    policy: fips,
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'chacha20-poly1305',
    want: { allow: false, rule: 'fips', code: 'ALGORITHM_NOT_ALLOWED' },
  },
  {
    name: 'FIPS: composite ML-DSA-65+ECDSA-P256 allowed',
    policy: fips,
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'ML-DSA-65+ECDSA-P256',
    want: { allow: true, rule: 't2-crypto' },
  },
  {
    name: 'FIPS: composite with Ed25519 refused',
    policy: fips,
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'ML-DSA-65+Ed25519',
    want: { allow: false, rule: 'fips', code: 'ALGORITHM_NOT_ALLOWED' },
  },
  {
    name: 'FIPS beats an explicit allow-all',
    policy: loadPolicy(JSON.stringify({ ...ALLOW_ALL_POLICY, fipsMode: true })),
    who: t2svc,
    rpc: `${C}Encrypt`,
    tenant: 't2',
    algorithm: 'X25519',
    want: { allow: false, rule: 'fips', code: 'ALGORITHM_NOT_ALLOWED' },
  },
];

function request(c: Pick<Case, 'who' | 'rpc' | 'tenant' | 'org' | 'customer' | 'algorithm'>): AuthzRequest {
  return {
    identity: c.who,
    rpc: c.rpc,
    org: (c.org ?? c.who.org) as OrgId,
    ...(c.tenant === undefined ? {} : { tenant: c.tenant as TenantId }),
    ...(c.customer === undefined ? {} : { customer: c.customer as CustomerId }),
    ...(c.algorithm === undefined ? {} : { algorithm: c.algorithm }),
  };
}

describe('policy engine decision table', () => {
  for (const c of cases) {
    it(c.name, () => {
      const engine = new PolicyEngine(new PolicyStore(c.policy ?? base));
      const got = engine.authorize(request(c));
      const want = c.want;
      assert.equal(
        got.allow,
        want.allow,
        `authorize(${c.who.uri} -> ${c.rpc}) = ${JSON.stringify(got)}, want allow=${want.allow}`,
      );
      assert.equal(got.rule, want.rule, `rule: got ${JSON.stringify(got)}, want ${want.rule}`);
      assert.equal(got.code, want.code, `code: got ${got.code}, want ${want.code}`);
      assert.ok(got.reason.length > 0, 'every decision has a reason');
    });
  }
});

describe('fail-closed', () => {
  const req = request({ who: t2svc, rpc: `${C}Encrypt`, tenant: 't2' });
  it('no policy loaded denies every call', () => {
    const d = new PolicyEngine(new PolicyStore()).authorize(req);
    assert.deepEqual([d.allow, d.rule], [false, 'no-policy']);
  });
  it('a malformed policy is refused and the engine keeps denying (started without one)', () => {
    const store = new PolicyStore();
    assert.throws(() => store.replace('{"version":1,"rules":[{"id":"x","effect":"allow"}]}'), KbError);
    const d = new PolicyEngine(store).authorize(req);
    assert.deepEqual([d.allow, d.rule], [false, 'no-policy']);
  });
  it('a malformed reload keeps the previous policy in force', () => {
    const store = new PolicyStore(base);
    assert.throws(() =>
      store.replace('{"version":1,"rules":[{"id":"x","effect":"maybe","identities":["*"],"rpcs":["*"]}]}'),
    );
    assert.equal(store.current()?.digest, base.digest);
    assert.equal(new PolicyEngine(store).authorize(req).allow, true);
  });
  it('an exception from the policy source denies', () => {
    const d = new PolicyEngine({
      current: () => {
        throw new Error('boom');
      },
    }).authorize(req);
    assert.deepEqual([d.allow, d.rule], [false, 'evaluator-error']);
  });
  it('an exception inside evaluation (corrupt compiled rule) denies', () => {
    const broken: Policy = {
      ...base,
      rules: [
        {
          id: 'bad',
          effect: 'allow',
          identities: [
            {
              source: 'x',
              test: () => {
                throw new Error('regex engine failure');
              },
            },
          ],
        },
      ],
    };
    const d = new PolicyEngine({ current: () => broken }).authorize(req);
    assert.deepEqual([d.allow, d.rule], [false, 'evaluator-error']);
  });
  it('a target tenant without its org denies (tenant names are per org)', () => {
    const d = new PolicyEngine(new PolicyStore(base)).authorize({
      identity: t1svc,
      rpc: `${C}Encrypt`,
      tenant: 't1' as TenantId,
      customer: 'default' as CustomerId,
    });
    assert.deepEqual([d.allow, d.rule], [false, 'structural:malformed']);
  });
  it('a request with a missing identity denies instead of throwing', () => {
    const d = new PolicyEngine(new PolicyStore(base)).authorize({
      rpc: `${C}Encrypt`,
    } as unknown as AuthzRequest);
    assert.equal(d.allow, false);
  });
  it('decisionError maps a FIPS deny to ALGORITHM_NOT_ALLOWED and others to PERMISSION_DENIED', () => {
    const f = evaluatePolicy(
      fips,
      request({ who: t2svc, rpc: `${C}Encrypt`, tenant: 't2', algorithm: 'X-Wing' }),
    );
    assert.equal(decisionError(f).code, 'ALGORITHM_NOT_ALLOWED');
    assert.match(decisionError(f).safeMessage, /X-Wing contains X25519/);
    const p = evaluatePolicy(base, request({ who: t1svc, rpc: `${A}CreateTenant` }));
    assert.equal(decisionError(p).code, 'PERMISSION_DENIED');
  });
  it('fipsMode is visible for health and metrics, and false when the source fails', () => {
    assert.equal(new PolicyEngine(new PolicyStore(fips)).fipsMode, true);
    assert.equal(new PolicyEngine(new PolicyStore(base)).fipsMode, false);
    assert.equal(
      new PolicyEngine({
        current: () => {
          throw new Error('x');
        },
      }).fipsMode,
      false,
    );
  });
  it('effective role: matching policy bindings decide, else certificate roles', () => {
    assert.equal(effectiveRole(base, 'spiffe://acme/admin/olga', ['viewer']), 'operator');
    assert.equal(
      effectiveRole(base, 'spiffe://acme/admin/olga', ['admin']),
      'operator',
      'a binding caps an admin certificate',
    );
    assert.equal(
      effectiveRole(base, 'spiffe://acme/admin/cert-only', ['admin']),
      'admin',
      'no binding: certificate roles',
    );
    assert.equal(effectiveRole(base, 'spiffe://acme/admin/nobody', []), undefined);
    assert.equal(effectiveRole(undefined, 'spiffe://acme/admin/x', ['viewer']), 'viewer');
  });
  it('evaluation is pure: the same request gives the same decision', () => {
    const r = request({ who: t1billing, rpc: `${C}Decrypt`, tenant: 't1', customer: 'default' });
    assert.deepEqual(evaluatePolicy(base, r), evaluatePolicy(base, r));
  });
});

describe('cross-tenant and cross-org calls are refused for every RPC, even under an allow-all policy', () => {
  const rpcs = allRpcs();
  const allowAll = loadPolicy(JSON.stringify(ALLOW_ALL_POLICY));
  const engine = new PolicyEngine(new PolicyStore(allowAll));
  it('the protos declare Admin and Crypto RPCs', () => {
    assert.ok(
      rpcs.some((r) => r.startsWith(A)) && rpcs.some((r) => r.startsWith(C)),
      `rpcs: ${rpcs.join(', ')}`,
    );
  });
  for (const rpc of rpcs) {
    it(`${rpc}: tenant t1 identity acting on tenant t2`, () => {
      const own = engine.authorize(request({ who: t1svc, rpc, tenant: 't1', customer: 'default' }));
      assert.equal(
        own.allow,
        true,
        `control: own tenant should be allowed by allow-all, got ${JSON.stringify(own)}`,
      );
      const d = engine.authorize(request({ who: t1svc, rpc, tenant: 't2', customer: 'default' }));
      assert.deepEqual([d.allow, d.rule], [false, 'structural:cross-tenant'], `got ${JSON.stringify(d)}`);
    });
    it(`${rpc}: org acme admin acting on org globex`, () => {
      const d = engine.authorize(request({ who: alice, rpc, org: 'globex', tenant: 't1' }));
      assert.deepEqual([d.allow, d.rule], [false, 'structural:cross-org'], `got ${JSON.stringify(d)}`);
    });
  }
});
