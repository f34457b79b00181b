// Deny rules and tenant ceilings fail closed on a field the RPC acts on but the request lacks
// (review H1); a field learnt later (pending) waits for its own check; allow rules stay strict;
// a field the RPC has nothing to do with leaves rules and ceilings alone.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import type { AuthzRequest, PendingField } from '../../daemon/src/policy/authorizer.ts';
import { loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import { PolicyEngine, evaluatePolicy } from '../../daemon/src/policy/policy-engine.ts';
import { rpcCarries } from '../../daemon/src/policy/rpc-fields.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';
import { caller } from './policy-fixtures.ts';

const C = 'keybroker.v1.Crypto/';
const K = 'keybroker.v1.Keys/';
const A = 'keybroker.v1.Admin/';
const svc = caller('spiffe://acme/t1/svc');
const alice = caller('spiffe://acme/admin/alice', ['admin']);

const policy = loadPolicy(
  JSON.stringify({
    version: 1,
    rules: [
      { id: 'no-c9', effect: 'deny', identities: ['spiffe://acme/t1/*'], rpcs: ['**'], customers: ['c9'] },
      {
        id: 'no-secret-key',
        effect: 'deny',
        identities: ['spiffe://acme/t1/*'],
        rpcs: ['**'],
        keys: ['secret*'],
      },
      {
        id: 't1-c1',
        effect: 'allow',
        identities: ['spiffe://acme/t1/*'],
        rpcs: [`${C}*`],
        customers: ['default', 'c1', 'c2'],
      },
      { id: 't1-keys', effect: 'allow', identities: ['spiffe://acme/t1/*'], rpcs: [`${K}*`] },
      { id: 'admins', effect: 'allow', identities: ['spiffe://acme/admin/*'], rpcs: [`${A}*`] },
    ],
    tenants: [{ org: 'acme', tenant: 't1', customers: ['default', 'c1', 'c9'], keys: ['k*', 'secret*'] }],
  }),
);

interface Case {
  name: string;
  rpc: string;
  customer?: string;
  keyName?: string;
  pending?: PendingField[];
  who?: typeof svc;
  want: { allow: boolean; rule: string };
}

const cases: Case[] = [
  // Customers: known values.
  {
    name: 'Decrypt for c1 (allowed by rule and ceiling)',
    rpc: `${C}Decrypt`,
    customer: 'c1',
    want: { allow: true, rule: 't1-c1' },
  },
  {
    name: 'Decrypt for c9: the deny rule',
    rpc: `${C}Decrypt`,
    customer: 'c9',
    want: { allow: false, rule: 'no-c9' },
  },
  {
    name: 'Decrypt for c2: outside the ceiling',
    rpc: `${C}Decrypt`,
    customer: 'c2',
    want: { allow: false, rule: 'tenant:acme/t1' },
  },
  // Customers: absent where the RPC carries one (fail closed).
  {
    name: 'Decrypt with no customer: the deny rule applies',
    rpc: `${C}Decrypt`,
    want: { allow: false, rule: 'no-c9' },
  },
  {
    name: 'EncryptBatch with no customer: fail closed',
    rpc: `${C}EncryptBatch`,
    want: { allow: false, rule: 'no-c9' },
  },
  // Customers: pending (authorized by the handler once known).
  {
    name: 'Decrypt, customer pending: provisionally allowed',
    rpc: `${C}Decrypt`,
    pending: ['customers'],
    want: { allow: true, rule: 't1-c1' },
  },
  {
    name: 'DecryptStream, customer pending',
    rpc: `${C}DecryptStream`,
    pending: ['customers'],
    want: { allow: true, rule: 't1-c1' },
  },
  // Keys: named keys.
  { name: 'Sign with key k1', rpc: `${K}Sign`, keyName: 'k1', want: { allow: true, rule: 't1-keys' } },
  {
    name: 'Sign with key secret1: the key deny rule',
    rpc: `${K}Sign`,
    keyName: 'secret1',
    want: { allow: false, rule: 'no-secret-key' },
  },
  {
    name: 'Sign with key other: outside the ceiling',
    rpc: `${K}Sign`,
    keyName: 'other',
    want: { allow: false, rule: 'tenant:acme/t1' },
  },
  // The customer rule does not reach Keys (tenant-level keys have no customer).
  { name: 'Sign naming no key: fail closed', rpc: `${K}Sign`, want: { allow: false, rule: 'no-secret-key' } },
  {
    name: 'ListKeys, keys pending: allowed (filtered per key)',
    rpc: `${K}ListKeys`,
    pending: ['keys'],
    want: { allow: true, rule: 't1-keys' },
  },
  {
    name: 'ListKeys: a list names no key, the key rule waits',
    rpc: `${K}ListKeys`,
    want: { allow: true, rule: 't1-keys' },
  },
  {
    name: 'ListKeys item secret1 is hidden',
    rpc: `${K}ListKeys`,
    keyName: 'secret1',
    want: { allow: false, rule: 'no-secret-key' },
  },
  // Fields an RPC has nothing to do with.
  {
    name: 'Admin ListTenants: customer rules do not reach it',
    rpc: `${A}ListTenants`,
    who: alice,
    want: { allow: true, rule: 'admins' },
  },
];

describe('fail-closed deny rules and ceilings', () => {
  for (const c of cases) {
    it(c.name, () => {
      const who = c.who ?? svc;
      const req: AuthzRequest = {
        identity: who,
        rpc: c.rpc,
        org: 'acme' as OrgId,
        ...(who.tenant !== undefined ? { tenant: who.tenant as TenantId } : {}),
        ...(c.customer !== undefined ? { customer: c.customer as CustomerId } : {}),
        ...(c.keyName !== undefined ? { keyName: c.keyName } : {}),
        ...(c.pending !== undefined ? { pending: c.pending } : {}),
      };
      const expected = c.want;
      const d = evaluatePolicy(policy, req);
      assert.deepEqual({ allow: d.allow, rule: d.rule }, expected, `${c.name}: ${d.reason}`);
      // The engine (memoized) says the same, twice.
      const e = new PolicyEngine({ current: () => policy });
      assert.equal(e.authorize(req).rule, expected.rule, `${c.name}: engine`);
      assert.equal(e.authorize(req).rule, expected.rule, `${c.name}: engine, remembered`);
    });
  }
  it('a pending check and a known customer are remembered apart', () => {
    const e = new PolicyEngine({ current: () => policy });
    const base = { identity: svc, rpc: `${C}Decrypt`, org: 'acme' as OrgId, tenant: 't1' as TenantId };
    assert.equal(e.authorize({ ...base, pending: ['customers'] }).allow, true);
    assert.equal(e.authorize(base).allow, false, 'no customer, not pending: fail closed');
    assert.equal(e.authorize({ ...base, customer: 'c9' as CustomerId }).allow, false);
  });
  it('allow rules stay strict: a rule naming customers does not match a call without one', () => {
    const p = loadPolicy(
      JSON.stringify({
        version: 1,
        rules: [{ id: 'only-c1', effect: 'allow', identities: ['**'], rpcs: ['**'], customers: ['c1'] }],
      }),
    );
    const d = evaluatePolicy(p, {
      identity: svc,
      rpc: `${K}Sign`,
      org: 'acme' as OrgId,
      tenant: 't1' as TenantId,
      keyName: 'k1',
    });
    assert.deepEqual({ allow: d.allow, rule: d.rule }, { allow: false, rule: 'no-match' });
  });
  it('an RPC of no known service carries every field (closed)', () => {
    for (const f of ['customers', 'keys', 'algorithms', 'tenants'] as const)
      assert.equal(rpcCarries('other.v1.X/Y', f), true, f);
    assert.equal(rpcCarries(`${C}Decrypt`, 'customers'), true);
    assert.equal(rpcCarries(`${K}ListKeys`, 'keys'), false);
    assert.equal(rpcCarries(`${A}ListTenants`, 'customers'), false);
  });
});

describe("the security model's policy example still holds", () => {
  const readme = readFileSync(join(REPO_ROOT, 'docs/security-model.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Policy'));
  const json = section.slice(
    section.indexOf('```json') + 7,
    section.indexOf('```', section.indexOf('```json') + 7),
  );
  const p = loadPolicy(json);
  const t1 = { org: 'acme' as OrgId, tenant: 't1' as TenantId };
  const svcT1 = caller('spiffe://acme/t1/svc');
  const billing = caller('spiffe://acme/t1/billing');
  const table: [string, AuthzRequest, boolean][] = [
    [
      'Decrypt at the gate (customer pending)',
      { identity: svcT1, rpc: `${C}Decrypt`, ...t1, pending: ['customers'] },
      true,
    ],
    [
      'Decrypt of c1 data',
      { identity: svcT1, rpc: `${C}Decrypt`, ...t1, customer: 'c1' as CustomerId },
      true,
    ],
    [
      'Decrypt of c2 data',
      { identity: svcT1, rpc: `${C}Decrypt`, ...t1, customer: 'c2' as CustomerId },
      false,
    ],
    [
      'Encrypt for default',
      { identity: svcT1, rpc: `${C}Encrypt`, ...t1, customer: 'default' as CustomerId },
      true,
    ],
    ['billing Decrypt', { identity: billing, rpc: `${C}Decrypt`, ...t1, pending: ['customers'] }, false],
    [
      'Keys with an algorithm outside the ceiling',
      { identity: svcT1, rpc: `${K}Sign`, ...t1, keyName: 'k', algorithm: 'ed25519' },
      false,
    ],
  ];
  for (const [name, req, allow] of table) {
    it(name, () => assert.equal(evaluatePolicy(p, req).allow, allow, evaluatePolicy(p, req).reason));
  }
});
