// Per-org policy sections (review M6): what a section may contain, how sections merge into the
// daemon-wide base, and how PolicyStore loads them from a directory (a bad one refuses the load).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import { loadOrgSection, mergeSections } from '../../daemon/src/policy/org-policy.ts';
import { loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import { effectiveRole, evaluatePolicy } from '../../daemon/src/policy/policy-engine.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { caller } from './policy-fixtures.ts';

const doc = (o: object) => JSON.stringify({ version: 1, rules: [], ...o });
const rule = (o: object) => ({ id: 'r', effect: 'deny', rpcs: ['**'], ...o });

describe('loadOrgSection: a section is confined to its org', () => {
  const refused: [string, string][] = [
    ['identities of another org', doc({ rules: [rule({ identities: ['spiffe://acme/**'] })] })],
    ['identities of every org', doc({ rules: [rule({ identities: ['spiffe://*/admin/*'] })] })],
    ['an org-prefix look-alike', doc({ rules: [rule({ identities: ['spiffe://beta2/**'] })] })],
    ['orgs naming another org', doc({ rules: [rule({ identities: ['spiffe://beta/**'], orgs: ['acme'] })] })],
    ['orgs as a glob', doc({ rules: [rule({ identities: ['spiffe://beta/**'], orgs: ['*'] })] })],
    ['a ceiling on another org', doc({ tenants: [{ org: 'acme', tenant: 't1', rpcs: ['x'] }] })],
    [
      'a role binding of another org',
      doc({ roleBindings: [{ identity: 'spiffe://acme/admin/a', role: 'admin' }] }),
    ],
    ['fipsMode', doc({ fipsMode: true })],
    ['adminRpcRoles', doc({ adminRpcRoles: { 'keybroker.v1.Admin/ListOrgs': 'admin' } })],
  ];
  for (const [name, text] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => loadOrgSection('beta', text),
        (e: unknown) =>
          e instanceof KbError && e.code === 'INVALID_ARGUMENT' && /org "beta"/.test(e.safeMessage),
      );
    });
  }
  it('accepts rules, ceilings and bindings within the org', () => {
    const p = loadOrgSection(
      'beta',
      doc({
        rules: [rule({ identities: ['spiffe://beta/**'], orgs: ['beta'] })],
        tenants: [{ org: 'beta', tenant: 'b1', customers: ['c1'] }],
        roleBindings: [{ identity: 'spiffe://beta/admin/*', role: 'viewer' }],
      }),
    );
    assert.equal(p.rules.length, 1);
  });
});

describe('mergeSections', () => {
  const base = loadPolicy(
    JSON.stringify({
      ...JSON.parse(DEFAULT_POLICY_TEXT),
      roleBindings: [{ identity: 'spiffe://beta/admin/boss', role: 'viewer' }],
      tenants: [{ org: 'beta', tenant: 'b1', customers: ['default', 'c1', 'c2'] }],
    }),
  );
  const section = loadOrgSection(
    'beta',
    doc({
      rules: [rule({ id: 'no-c1', identities: ['spiffe://beta/b1/*'], customers: ['c1'] })],
      tenants: [{ org: 'beta', tenant: 'b1', customers: ['default', 'c1'] }],
      roleBindings: [
        { identity: 'spiffe://beta/admin/boss', role: 'admin' },
        { identity: 'spiffe://beta/admin/ann', role: 'viewer' },
      ],
    }),
  );
  const merged = mergeSections(base, new Map([['beta', section]]));
  const svc = caller('spiffe://beta/b1/svc');
  const enc = (customer: string) =>
    evaluatePolicy(merged, {
      identity: svc,
      rpc: 'keybroker.v1.Crypto/Encrypt',
      org: 'beta' as OrgId,
      tenant: 'b1' as TenantId,
      customer: customer as never,
    });
  it("a section's rules apply, audited with the org's prefix", () => {
    assert.equal(enc('c1').rule, 'beta:no-c1');
  });
  it('ceilings stack: the base allows c2, the section does not', () => {
    assert.equal(enc('c2').allow, false);
    assert.equal(enc('default').allow, true);
  });
  it("role bindings: the base's word first, the section's for identities the base does not name", () => {
    assert.equal(effectiveRole(merged, 'spiffe://beta/admin/boss', ['admin']), 'viewer');
    assert.equal(effectiveRole(merged, 'spiffe://beta/admin/ann', ['admin']), 'viewer');
    assert.equal(effectiveRole(merged, 'spiffe://beta/admin/other', ['admin']), 'admin');
  });
  it('the digest changes with a section', () => {
    assert.notEqual(merged.digest, base.digest);
    assert.equal(mergeSections(base, new Map()), base);
  });
});

describe('PolicyStore sections', () => {
  it('loads <org>.json from a directory and refuses the load when one is bad', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-sections-'));
    try {
      const s = new PolicyStore(loadPolicy(DEFAULT_POLICY_TEXT), DEFAULT_POLICY_TEXT);
      const good = doc({ rules: [rule({ identities: ['spiffe://beta/**'] })] });
      writeFileSync(join(dir, 'beta.json'), good);
      writeFileSync(join(dir, 'notes.txt'), 'ignored');
      s.useSectionsDir(dir);
      assert.equal(s.sectionText('beta'), good);
      assert.equal(s.current()?.rules.at(-1)?.id, 'beta:r');
      writeFileSync(join(dir, 'gamma.json'), doc({ rules: [rule({ identities: ['spiffe://beta/**'] })] }));
      assert.throws(() => s.useSectionsDir(dir), /gamma\.json/);
      assert.equal(s.sectionText('gamma'), undefined, 'the bad load changed nothing');
      assert.equal(s.sectionText('beta'), good);
      // Replacing the base keeps the sections merged in.
      s.replace(DEFAULT_POLICY_TEXT, 'api');
      assert.equal(s.current()?.rules.at(-1)?.id, 'beta:r');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
