/**
 * Admin.CreateTenants (bulk provisioning) against the real daemon over gRPC + mTLS with a fresh
 * SoftHSM2 token: the happy path (every tenant usable at once, and still after a kill -9 and a
 * restart), the bounds, duplicate and invalid names (nothing created), partial results (names
 * that exist or existed come back ALREADY_EXISTS, the rest are created), who may call it, and
 * its one audit record per call.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode, runCli } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let admin: KeybrokerClient;

before(async () => {
  d = await startDaemon();
  admin = d.client('admin');
});
after(async () => {
  if (d.proc.exitCode === null) await d.stop();
  removeDataDir(d.dataDir);
});

const A = (m: string, req: object = {}) => admin.admin.unary<R>(m, req);
const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
const results = (r: R) => r.results as R[];

/** Encrypt then decrypt as `tenant`'s service identity; returns the ciphertext. */
async function roundTrip(tenant: string, text: string): Promise<R> {
  const svc = d.client(await d.issueClient(`spiffe://acme/${tenant}/app`));
  const plaintext = Buffer.from(text);
  const aad = Buffer.from(`aad-${tenant}`);
  const ct = await svc.crypto.unary<R>('Encrypt', { plaintext, aad });
  const pt = await svc.crypto.unary<R>('Decrypt', { ciphertext: ct.ciphertext, aad });
  assert.deepEqual(Buffer.from(pt.plaintext as Uint8Array), plaintext, `Decrypt as ${tenant}`);
  return ct;
}

const kept: { tenant: string; ct: R }[] = [];

test('CreateTenants: 200 tenants in one call, every one usable at once and listed', async () => {
  const want = names('bulk', 200);
  const r = await A('CreateTenants', { org: 'acme', tenants: want, policy: { usageLimit: 500 } });
  assert.equal(r.created, 200, 'created count');
  assert.deepEqual(
    results(r).map((x) => x.name),
    want,
    'one result per name, in request order',
  );
  for (const x of results(r)) {
    const t = x.tenant as R | undefined;
    assert.ok(t, `CreateTenants result for ${String(x.name)}: wanted a tenant, got ${JSON.stringify(x)}`);
    assert.equal(t.tenant, x.name, 'result tenant name');
    assert.equal(((t.key as R).policy as R).usageLimit, 500, 'batch policy applied');
  }
  const listed = new Set(((await A('ListTenants', { org: 'acme' })).tenants as R[]).map((t) => t.tenant));
  for (const n of want) assert.ok(listed.has(n), `ListTenants includes ${n}`);
  // Spread over the batch: first, middle, last; a customer created in one of them (its file opens).
  for (const t of ['bulk-0', 'bulk-99', 'bulk-199'])
    kept.push({ tenant: t, ct: await roundTrip(t, `hi ${t}`) });
  await A('CreateCustomer', { org: 'acme', tenant: 'bulk-7', customer: 'carol' });
  const c = await A('DescribeCustomer', { org: 'acme', tenant: 'bulk-7', customer: 'carol' });
  assert.equal((c.customer as R).customer, 'carol', 'customer in a bulk-created tenant file');
});

test('CreateTenants bounds, duplicate and invalid names: INVALID_ARGUMENT and nothing created', async () => {
  const cases: [string, object][] = [
    ['no names', { org: 'acme', tenants: [] }],
    ['1001 names', { org: 'acme', tenants: names('big', 1001) }],
    ['a name twice', { org: 'acme', tenants: ['dup-a', 'dup-b', 'dup-a'] }],
    ['an invalid name', { org: 'acme', tenants: ['ok-a', 'Not Valid'] }],
    ['a name too long', { org: 'acme', tenants: ['ok-b', 'x'.repeat(64)] }],
    ['the reserved name', { org: 'acme', tenants: ['ok-c', 'admin'] }],
    ['no org', { tenants: ['ok-d'] }],
  ];
  for (const [what, req] of cases) {
    await expectCode(A('CreateTenants', req), GrpcCode.INVALID_ARGUMENT, `CreateTenants with ${what}`);
  }
  const listed = ((await A('ListTenants', { org: 'acme' })).tenants as R[]).map((t) => t.tenant);
  for (const n of ['dup-a', 'dup-b', 'ok-a', 'ok-b', 'ok-c', 'ok-d', 'big-0'])
    assert.ok(!listed.includes(n), `${n} must not exist after a refused CreateTenants`);
  await expectCode(
    A('CreateTenants', { org: 'nosuch', tenants: ['x'] }),
    GrpcCode.PERMISSION_DENIED,
    'CreateTenants in another org',
  );
});

test('CreateTenants partial results: existing and destroyed names are ALREADY_EXISTS, the rest created', async () => {
  await A('CreateTenant', { org: 'acme', tenant: 'was-here' });
  await A('CreateTenant', { org: 'acme', tenant: 'was-gone' });
  await A('DestroyTenant', { org: 'acme', tenant: 'was-gone' });
  const req = ['p-0', 'was-here', 'p-1', 'bulk-5', 'was-gone', 'p-2'];
  const r = await A('CreateTenants', { org: 'acme', tenants: req });
  assert.equal(r.created, 3, 'created count with 3 taken names');
  const byName = new Map(results(r).map((x) => [x.name as string, x]));
  for (const n of ['was-here', 'bulk-5', 'was-gone']) {
    const e = byName.get(n)?.error as R | undefined;
    assert.equal(
      e?.reason,
      'ALREADY_EXISTS',
      `${n}: wanted ALREADY_EXISTS, got ${JSON.stringify(byName.get(n))}`,
    );
    assert.equal(e?.code, GrpcCode.ALREADY_EXISTS, `${n}: item error code`);
  }
  for (const n of ['p-0', 'p-1', 'p-2']) {
    assert.ok(byName.get(n)?.tenant, `${n}: wanted created, got ${JSON.stringify(byName.get(n))}`);
  }
  kept.push({ tenant: 'p-2', ct: await roundTrip('p-2', 'partial') });
  // The tenant that existed before keeps its own key: its data still decrypts (not replaced).
  kept.push({ tenant: 'was-here', ct: await roundTrip('was-here', 'untouched') });
  // All taken: nothing created, every name reported, and the call itself succeeds.
  const none = await A('CreateTenants', { org: 'acme', tenants: ['p-0', 'p-1'] });
  assert.equal(none.created, 0, 'created count when every name is taken');
  assert.equal(results(none).length, 2, 'every name reported');
});

test('CreateTenant racing CreateTenants for one name: one creates it, the other says ALREADY_EXISTS', async () => {
  for (let i = 0; i < 6; i++) {
    const name = `race-${i}`;
    // Alternate which call starts first; either may commit first.
    const single = () =>
      A('CreateTenant', { org: 'acme', tenant: name }).then(
        () => 'created',
        (err: { code?: number }) =>
          err.code === GrpcCode.ALREADY_EXISTS ? 'exists' : `error ${String(err.code)}`,
      );
    const bulk = () =>
      A('CreateTenants', { org: 'acme', tenants: [name, `${name}-other`] }).then((r) => {
        const x = results(r)[0] ?? {};
        return x.tenant
          ? 'created'
          : (x.error as R | undefined)?.reason === 'ALREADY_EXISTS'
            ? 'exists'
            : 'error';
      });
    const [a, b] =
      i % 2 === 0 ? await Promise.all([single(), bulk()]) : (await Promise.all([bulk(), single()])).reverse();
    assert.deepEqual(
      [a, b].sort(),
      ['created', 'exists'],
      `race ${i}: CreateTenant -> ${String(a)}, CreateTenants -> ${String(b)}`,
    );
  }
});

test('CreateTenants is an admin RPC: a service identity and an admin of another org are refused', async () => {
  const svc = d.client('service');
  await expectCode(
    svc.admin.unary('CreateTenants', { org: 'acme', tenants: ['svc-made'] }),
    GrpcCode.PERMISSION_DENIED,
    'CreateTenants by a service identity',
  );
  const other = d.client(await d.issueClient('spiffe://otherorg/admin/ops'));
  await expectCode(
    other.admin.unary('CreateTenants', { org: 'acme', tenants: ['other-made'] }),
    GrpcCode.PERMISSION_DENIED,
    'CreateTenants by an admin of another org',
  );
});

test('keybroker admin tenant create-many: names from a file and arguments, in batches, taken names listed', () => {
  const file = join(d.dataDir, 'names.txt');
  writeFileSync(file, ['# tenants to migrate', 'cli-0', '', 'cli-1', 'was-here', 'cli-2'].join('\n') + '\n');
  const r = runCli(
    'admin',
    'tenant',
    'create-many',
    'acme',
    'cli-3',
    '--file',
    file,
    '--data-dir',
    d.dataDir,
  );
  assert.equal(r.status, 0, `create-many exit ${r.status}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as R;
  assert.deepEqual(out, { created: 4, alreadyExisted: ['was-here'], calls: 1 }, 'create-many summary');
  const bad = runCli('admin', 'tenant', 'create-many', 'acme', 'Bad Name', '--data-dir', d.dataDir);
  assert.equal(bad.status, 1, 'create-many with an invalid name exits 1');
  assert.match(bad.stderr, /INVALID_ARGUMENT/, 'create-many error names the status');
});

test('CreateTenants leaves one audit record per call, naming the count', async () => {
  const audit = await queryAudit(join(d.dataDir, 'audit/audit.log'), { rpc: 'CreateTenants' });
  const ok = audit.filter((e) => e.result === 'ok');
  const reasons = ok.map((e) => e.reason ?? '');
  // The race test's calls come in between with either count; the others are known.
  for (const want of [
    'created 200 of 200 tenants',
    'created 3 of 6 tenants',
    'created 0 of 2 tenants',
    'created 4 of 5 tenants',
  ])
    assert.ok(
      reasons.includes(want),
      `an audit record with reason "${want}" among ${JSON.stringify(reasons)}`,
    );
  for (const r of reasons) assert.match(r, /^created \d+ of \d+ tenants$/, 'CreateTenants audit reason');
  for (const e of ok) assert.equal(e.org, 'acme', 'audit record org');
  assert.ok(
    audit.some((e) => e.result === 'error' && e.code === 'INVALID_ARGUMENT'),
    'refused calls are audited too',
  );
});

test('CreateTenants survives kill -9 right after the response: every tenant is there after a restart', async () => {
  const want = names('crash', 300);
  const r = await A('CreateTenants', { org: 'acme', tenants: want });
  assert.equal(r.created, 300, 'created before the kill');
  const dataDir = d.dataDir;
  d.closeClients();
  d.proc.kill('SIGKILL');
  await d.exited;
  d = await startDaemon({ dataDir });
  admin = d.client('admin');
  const listed = new Set(((await A('ListTenants', { org: 'acme' })).tenants as R[]).map((t) => t.tenant));
  for (const n of want) assert.ok(listed.has(n), `${n} listed after kill -9 and restart`);
  await roundTrip('crash-0', 'after crash');
  await roundTrip('crash-299', 'after crash');
  // Data written before the crash still decrypts under the same keys.
  for (const k of kept) {
    const svc = d.client(await d.issueClient(`spiffe://acme/${k.tenant}/app`));
    const pt = await svc.crypto.unary<R>('Decrypt', {
      ciphertext: k.ct.ciphertext,
      aad: Buffer.from(`aad-${k.tenant}`),
    });
    assert.ok((pt.plaintext as Uint8Array).length > 0, `Decrypt as ${k.tenant} after restart`);
  }
});
