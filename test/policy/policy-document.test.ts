// loadPolicy validates everything and names the bad field; PolicyStore swaps atomically.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { MAX_POLICY_BYTES, loadPolicy } from '../../daemon/src/policy/policy-document.ts';
import { PolicyStore } from '../../daemon/src/policy/policy-store.ts';
import { BASE_POLICY } from './policy-fixtures.ts';

const rule = {
  id: 'r',
  effect: 'allow',
  identities: ['spiffe://acme/t1/*'],
  rpcs: ['keybroker.v1.Crypto/*'],
};
const doc = (over: Record<string, unknown>) => JSON.stringify({ version: 1, rules: [rule], ...over });

const bad: { name: string; text: string; code?: string; mentions: RegExp }[] = [
  { name: 'not JSON', text: '{"version":1,', mentions: /not valid JSON/ },
  { name: 'empty text', text: '', mentions: /not valid JSON/ },
  { name: 'top-level array', text: '[]', mentions: /policy must be object/ },
  { name: 'wrong version', text: doc({ version: 2 }), mentions: /policy\.version/ },
  { name: 'missing rules', text: JSON.stringify({ version: 1 }), mentions: /missing "rules"/ },
  { name: 'unknown top-level field', text: doc({ rulez: [] }), mentions: /unknown field "rulez"/ },
  {
    name: 'bad effect',
    text: doc({ rules: [{ ...rule, effect: 'maybe' }] }),
    mentions: /policy\.rules\.0\.effect/,
  },
  {
    name: 'rule without rpcs',
    text: doc({ rules: [{ id: 'r', effect: 'allow', identities: ['*'] }] }),
    mentions: /policy\.rules\.0 .*missing "rpcs"/,
  },
  {
    name: 'empty identities list',
    text: doc({ rules: [{ ...rule, identities: [] }] }),
    mentions: /policy\.rules\.0\.identities/,
  },
  {
    name: 'pattern with a space',
    text: doc({ rules: [{ ...rule, rpcs: ['keybroker.v1.Crypto/ *'] }] }),
    mentions: /policy\.rules\.0\.rpcs\.0/,
  },
  {
    name: 'triple star',
    text: doc({ rules: [{ ...rule, customers: ['***'] }] }),
    mentions: /policy\.rules\.0\.customers\.0/,
  },
  {
    name: 'duplicate rule id',
    text: doc({ rules: [rule, rule] }),
    mentions: /policy\.rules\.1\.id duplicates "r"/,
  },
  {
    name: 'unknown field in a rule',
    text: doc({ rules: [{ ...rule, tenantz: ['x'] }] }),
    mentions: /unknown field "tenantz"/,
  },
  {
    name: 'bad role binding',
    text: doc({ roleBindings: [{ identity: 'spiffe://acme/admin/a', role: 'root' }] }),
    mentions: /policy\.roleBindings\.0\.role/,
  },
  {
    name: 'adminRpcRoles for a non-Admin RPC',
    text: doc({ adminRpcRoles: { 'keybroker.v1.Crypto/Encrypt': 'viewer' } }),
    mentions: /policy\.adminRpcRoles/,
  },
  {
    name: 'tenant ceiling with a bad tenant name',
    text: doc({ tenants: [{ org: 'acme', tenant: 'T1!' }] }),
    mentions: /policy\.tenants\.0\.tenant/,
  },
  {
    name: 'duplicate tenant ceiling',
    text: doc({
      tenants: [
        { org: 'acme', tenant: 't1' },
        { org: 'acme', tenant: 't1' },
      ],
    }),
    mentions: /policy\.tenants\.1 duplicates acme\/t1/,
  },
  { name: 'fipsMode not boolean', text: doc({ fipsMode: 'yes' }), mentions: /policy\.fipsMode/ },
  {
    name: 'too large',
    text: `${doc({})}${' '.repeat(MAX_POLICY_BYTES)}`,
    code: 'TOO_LARGE',
    mentions: /larger than/,
  },
];

describe('loadPolicy refuses bad documents, naming the field', () => {
  for (const c of bad) {
    it(c.name, () => {
      assert.throws(
        () => loadPolicy(c.text),
        (err: unknown) => {
          assert.ok(err instanceof KbError, `loadPolicy threw ${String(err)}, want KbError`);
          assert.equal(err.code, c.code ?? 'INVALID_ARGUMENT');
          assert.match(
            err.safeMessage,
            c.mentions,
            `message "${err.safeMessage}" should match ${c.mentions}`,
          );
          return true;
        },
      );
    });
  }
  it('accepts the fixture policy and records its digest', () => {
    const p = loadPolicy(JSON.stringify(BASE_POLICY));
    assert.match(p.digest, /^[0-9a-f]{64}$/);
    assert.equal(p.rules.length, 4);
    assert.equal(p.fipsMode, false);
  });
});

describe('PolicyStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-policy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  it('reload from file swaps in a valid policy and reports both digests', async () => {
    const f = join(dir, 'p.json');
    writeFileSync(f, JSON.stringify(BASE_POLICY));
    const store = await PolicyStore.fromFile(f);
    const first = store.current()?.digest;
    writeFileSync(f, doc({ fipsMode: true }));
    const swap = await store.reloadFromFile(f);
    assert.equal(swap.previousDigest, first);
    assert.equal(store.current()?.fipsMode, true);
  });
  it('a bad file keeps the old policy (same object)', async () => {
    const f = join(dir, 'q.json');
    writeFileSync(f, JSON.stringify(BASE_POLICY));
    const store = await PolicyStore.fromFile(f);
    const before = store.current();
    writeFileSync(f, '{"version":1,"rules":[{"id":"x"}]}');
    await assert.rejects(
      store.reloadFromFile(f),
      (e: unknown) => e instanceof KbError && e.code === 'INVALID_ARGUMENT',
    );
    assert.equal(store.current(), before);
    await assert.rejects(
      store.reloadFromFile(join(dir, 'missing.json')),
      (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION',
    );
    assert.equal(store.current(), before);
  });
});
