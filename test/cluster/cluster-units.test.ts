/**
 * The pure parts of `serve --workers N`: the worker count, each worker's audit file and limit
 * share, which broker calls announce a change (and of what), the cross-process shred lock, and
 * which files of an audit folder are chains.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { auditChainFiles } from '../../daemon/src/audit/audit-chains.ts';
import type { CacheScope } from '../../daemon/src/cluster/cluster-messages.ts';
import { coherentBroker } from '../../daemon/src/cluster/coherent-broker.ts';
import { DataDirLock } from '../../daemon/src/cluster/data-dir-lock.ts';
import { brokerId, workerConfig, workerIdentity } from '../../daemon/src/cluster/worker-config.ts';
import { workerAuditPath, workerCount } from '../../daemon/src/cluster/worker-count.ts';
import { DEFAULT_CONFIG } from '../../daemon/src/config/config-schema.ts';
import type { Config } from '../../daemon/src/config/config-schema.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { RegistryAuditHead } from '../../daemon/src/store/registry-audit-head.ts';
import { RegistryStore } from '../../daemon/src/store/registry-store.ts';

test('workerCount: auto is the cores, integers 1..1024, anything else refused', () => {
  const cases: [string | number, number | 'throws'][] = [
    ['auto', Math.max(1, availableParallelism())],
    ['1', 1],
    [1, 1],
    ['2', 2],
    [16, 16],
    ['1024', 1024],
    ['0', 'throws'],
    [0, 'throws'],
    ['-1', 'throws'],
    ['1.5', 'throws'],
    [2.5, 'throws'],
    ['two', 'throws'],
    ['', 'throws'],
    [1025, 'throws'],
    ['01', 'throws'],
  ];
  for (const [v, want] of cases) {
    if (want === 'throws')
      assert.throws(() => workerCount(v), /serve\.workers/, `workerCount(${JSON.stringify(v)})`);
    else assert.equal(workerCount(v), want, `workerCount(${JSON.stringify(v)})`);
  }
});

test('workerAuditPath: each worker its own file next to the configured one', () => {
  const cases: [string, number, string][] = [
    ['/d/audit/audit.log', 1, '/d/audit/audit-w1.log'],
    ['/d/audit/audit.log', 12, '/d/audit/audit-w12.log'],
    ['/d/audit/trail', 2, '/d/audit/trail-w2'],
    ['/d/a.b/audit.jsonl', 3, '/d/a.b/audit-w3.jsonl'],
  ];
  for (const [p, id, want] of cases) assert.equal(workerAuditPath(p, id), want, `${p} w${id}`);
});

test('workerIdentity and workerConfig: the environment names the worker; limits are 1/N (rounded up)', () => {
  assert.equal(workerIdentity({}), undefined, 'no cluster env: a single process');
  assert.equal(workerIdentity({ KB_WORKER_ID: '0', KB_WORKER_COUNT: '2' }), undefined, 'id 0 refused');
  const w = workerIdentity({ KB_WORKER_ID: '2', KB_WORKER_COUNT: '3' });
  assert.deepEqual(w, { id: 2, workers: 3 });
  assert.equal(brokerId(w as NonNullable<typeof w>), 'w2');
  const base = {
    ...DEFAULT_CONFIG,
    audit: { ...DEFAULT_CONFIG.audit, path: '/d/audit/audit.log' },
    rateLimit: {
      ...DEFAULT_CONFIG.rateLimit,
      perTenantPerSec: 100,
      tenantOpsPerDay: 1000,
      perIdentityBurst: 1,
    },
  } as Config;
  assert.equal(workerConfig(base, undefined), base, 'single process: unchanged');
  const c = workerConfig(base, w);
  assert.equal(c.audit.path, '/d/audit/audit-w2.log');
  assert.equal(c.metrics.enabled, false, 'the primary serves /metrics');
  assert.equal(c.lifecycle.readyFile, '', 'the primary writes the ready file');
  assert.equal(c.rateLimit.perTenantPerSec, 34, '100 / 3 rounded up');
  assert.equal(c.rateLimit.tenantOpsPerDay, 334, '1000 / 3 rounded up');
  assert.equal(c.rateLimit.perIdentityBurst, 1, 'never below 1');
  const off = workerConfig({ ...base, rateLimit: { ...base.rateLimit, tenantOpsPerDay: 0 } }, w);
  assert.equal(off.rateLimit.tenantOpsPerDay, 0, 'no quota stays no quota');
});

/** A stand-in for KeyBroker with a private field (methods must run on the real object). */
class FakeBroker {
  readonly #calls: string[] = [];
  readonly asymmetric = {
    rotateKey: async (_ref: object, _id: string) => 'rotated',
    describeKey: async (_ref: object, _id: string) => 'described',
  };
  get calls(): string[] {
    return this.#calls;
  }
  async encrypt(_ref: object): Promise<string> {
    this.#calls.push('encrypt');
    return 'ct';
  }
  async rotateCustomerKey(_ref: object, _customer: string): Promise<string> {
    this.#calls.push('rotate');
    return 'v2';
  }
  async setKeyVersionEnabled(_ref: object, _c: string | undefined, _v: number, _e: boolean): Promise<never> {
    this.#calls.push('set');
    throw new KbError('NOT_FOUND', 'customer');
  }
  async createOrg(_org: string): Promise<string> {
    return 'org';
  }
  async rotateDueKeys(_now?: Date): Promise<number> {
    return 0;
  }
  async destroyTenant(_ref: object): Promise<string> {
    return 'receipt';
  }
}

test('coherentBroker: writes announce their scope once settled (failures too); reads and the data plane do not', async () => {
  const seen: (CacheScope | undefined)[] = [];
  const raw = new FakeBroker();
  const b = coherentBroker(raw, (s) => seen.push(s));
  const ref = { org: 'acme', tenant: 'alpha' };
  const cases: { name: string; run: () => Promise<unknown>; want: (CacheScope | undefined)[] }[] = [
    { name: 'encrypt (data plane)', run: () => b.encrypt(ref), want: [] },
    {
      name: 'rotateCustomerKey',
      run: () => b.rotateCustomerKey(ref, 'bob'),
      want: [{ org: 'acme', tenant: 'alpha', customer: 'bob' }],
    },
    {
      name: 'setKeyVersionEnabled that fails',
      run: () => b.setKeyVersionEnabled(ref, 'bob', 1, false).catch((e: unknown) => e),
      want: [{ org: 'acme', tenant: 'alpha', customer: 'bob' }],
    },
    { name: 'createOrg', run: () => b.createOrg('neworg'), want: [{ org: 'neworg' }] },
    { name: 'rotateDueKeys (every org)', run: () => b.rotateDueKeys(new Date()), want: [undefined] },
    { name: 'destroyTenant', run: () => b.destroyTenant(ref), want: [{ org: 'acme', tenant: 'alpha' }] },
    { name: 'asymmetric.describeKey (read)', run: () => b.asymmetric.describeKey(ref, 'k'), want: [] },
    {
      name: 'asymmetric.rotateKey',
      run: () => b.asymmetric.rotateKey(ref, 'k'),
      want: [{ org: 'acme', tenant: 'alpha', customer: 'k' }],
    },
  ];
  for (const c of cases) {
    seen.length = 0;
    await c.run();
    assert.deepEqual(seen, c.want, c.name);
  }
  assert.deepEqual(raw.calls, ['encrypt', 'rotate', 'set'], 'every call reached the broker itself');
  assert.equal(b.asymmetric, b.asymmetric, 'the wrapped part is made once');
});

test('DataDirLock: one holder at a time; a dead holder is taken over; a live one is waited for, then refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-lock-'));
  try {
    const path = join(dir, 'shred.lock');
    const a = new DataDirLock(path);
    const b = new DataDirLock(path); // as another process would: its own queue, the same file
    const order: string[] = [];
    const slow = (name: string) => async () => {
      order.push(`${name} in`);
      assert.ok(existsSync(path), `${name} holds the file`);
      await new Promise((r) => setTimeout(r, 60));
      order.push(`${name} out`);
    };
    await Promise.all([a.run(slow('a1')), b.run(slow('b1')), a.run(slow('a2'))]);
    for (let i = 0; i < order.length; i += 2)
      assert.equal(
        order[i]?.replace(' in', ''),
        order[i + 1]?.replace(' out', ''),
        `no overlap: ${order.join(', ')}`,
      );
    assert.equal(existsSync(path), false, 'released');

    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    writeFileSync(path, `${dead.stdout}\n`);
    assert.equal(await a.run(async () => 'took over'), 'took over', 'a stale lock of a dead pid');

    writeFileSync(path, `${process.ppid}\n`); // alive, and never releases
    const short = new DataDirLock(path, 150);
    await assert.rejects(
      short.run(async () => 'never'),
      (e: unknown) => e instanceof KbError && e.code === 'HSM_UNAVAILABLE',
    );
    assert.equal(existsSync(path), true, 'a live holder is not taken over');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('auditChainFiles: the single-process chain and every worker chain, in worker order, nothing else', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-chains-'));
  try {
    for (const f of [
      'audit-w10.log',
      'audit-w2.log',
      'audit.log',
      'audit-w1.log',
      'audit-key.pem',
      'audit.log.lock',
      'audit-w2.log.lock',
      'x.log',
    ])
      writeFileSync(join(dir, f), '');
    assert.deepEqual(
      auditChainFiles(dir).map((p) => p.slice(dir.length + 1)),
      ['audit.log', 'audit-w1.log', 'audit-w2.log', 'audit-w10.log'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RegistryAuditHead: the single log and each worker chain keep their own pinned head', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-heads-'));
  const reg = RegistryStore.open(join(dir, 'registry.db'));
  try {
    const single = new RegistryAuditHead(reg);
    const w1 = new RegistryAuditHead(reg, 'w1');
    const w2 = new RegistryAuditHead(reg, 'w2');
    const heads = [
      [single, { seq: 10, hash: 'a'.repeat(64), state: 'running' }],
      [w1, { seq: 20, hash: 'b'.repeat(64), state: 'stopped' }],
      [w2, { seq: 30, hash: 'c'.repeat(64), state: 'running' }],
    ] as const;
    for (const [h] of heads) assert.equal(h.load(), undefined, 'nothing pinned yet');
    for (const [h, v] of heads) h.save(v);
    for (const [h, v] of heads) assert.deepEqual(h.load(), v, 'each reads back its own head');
    w2.save({ seq: 31, hash: 'd'.repeat(64), state: 'stopped' });
    assert.deepEqual(w1.load(), heads[1][1], 'w2 moving does not move w1');
    assert.deepEqual(single.load(), heads[0][1], 'nor the single log');
    assert.equal(w1.reset()?.seq, 20);
    assert.equal(w1.load()?.state, 'reset');
    assert.equal(w2.load()?.state, 'stopped', 'a reset is per chain');
  } finally {
    reg.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
