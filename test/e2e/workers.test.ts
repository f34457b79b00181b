/**
 * `keybroker serve --workers 2` as a real cluster (primary + two brokers, each with its own
 * PKCS#11 session to one SoftHSM2 token, one set of SQLite files, its own audit chain):
 * calls land on both workers (x-broker-id); a rotation, a version disable and a shred done
 * through a connection on one worker hold on a connection served by the other within 1 s; a
 * shred receipt waits for every worker (a worker that cannot answer is killed first); SIGKILL
 * of a worker under load loses no acknowledged write; `audit verify --dir` checks both chains.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { connectKeybroker } from '../../daemon/src/api/api-client.ts';
import type { ServiceClient } from '../../daemon/src/api/api-client.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, runCli } from './e2e-helpers.ts';
import { createHash } from 'node:crypto';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import type { PemPair } from '../../daemon/src/tls/dev-pki.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
const opened: KeybrokerClient[] = [];

before(async () => {
  // acme is the operator org: its admin may replace the daemon-wide policy (SetPolicy below).
  d = await startDaemon({ workers: 2, timeoutMs: 90_000, env: { KB_POLICY_OPERATOR_ORG: 'acme' } });
});
after(async () => {
  for (const c of opened) c.close();
  // KB_TEST_KEEP_OUTPUT=FILE: the cluster's log, to read after a failure.
  if (d !== undefined && process.env.KB_TEST_KEEP_OUTPUT)
    writeFileSync(process.env.KB_TEST_KEEP_OUTPUT, d.output);
  if (d !== undefined) {
    await d.stop();
    removeDataDir(d.dataDir);
  }
});

/** A client with connections of its own (grpc-js shares one per target unless told not to). */
function ownClient(who: 'admin' | 'service' | PemPair): KeybrokerClient {
  const pair =
    typeof who === 'string'
      ? { certPem: readFileSync(d.pki(`${who}.pem`)), keyPem: readFileSync(d.pki(`${who}-key.pem`)) }
      : { certPem: Buffer.from(who.certPem), keyPem: Buffer.from(who.keyPem) };
  const c = connectKeybroker({
    address: d.address,
    caPem: readFileSync(d.pki('ca.pem')),
    ...pair,
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  });
  opened.push(c);
  return c;
}

interface Answer {
  readonly broker: string | undefined;
  readonly res?: R;
  readonly err?: ServiceError;
}

/** One unary call, with the x-broker-id of the worker that answered (header or trailer). */
function call(sc: ServiceClient, method: string, req: object): Promise<Answer> {
  const fn = (
    sc.raw as unknown as Record<
      string,
      (...a: unknown[]) => { on(ev: string, f: (m: Metadata) => void): void }
    >
  )[method];
  assert.ok(fn, `no RPC ${method}`);
  return new Promise((resolve) => {
    let broker: string | undefined;
    const c = fn.call(
      sc.raw,
      req,
      new Metadata(),
      { deadline: new Date(Date.now() + 20_000) },
      (err: ServiceError | null, res: R) => {
        const b = broker ?? (err?.metadata?.get('x-broker-id')[0] as string | undefined);
        resolve(err ? { broker: b, err } : { broker: b, res });
      },
    );
    c.on('metadata', (m) => (broker = m.get('x-broker-id')[0] as string | undefined));
  });
}

const ENC = { plaintext: Buffer.from('one KiB or so'), aad: Buffer.from('ctx') };

/** Open clients until one's `pick` service is served by each of the two workers. */
async function onEachWorker(
  who: 'admin' | 'service' | PemPair,
  pick: (c: KeybrokerClient) => ServiceClient,
  probe: { method: string; req: object },
): Promise<Map<string, KeybrokerClient>> {
  const by = new Map<string, KeybrokerClient>();
  for (let i = 0; i < 24 && by.size < 2; i++) {
    const c = ownClient(who);
    const a = await call(pick(c), probe.method, probe.req);
    assert.ok(a.broker !== undefined, `${probe.method} answered without x-broker-id`);
    if (!by.has(a.broker)) by.set(a.broker, c);
  }
  assert.deepEqual([...by.keys()].sort(), ['w1', 'w2'], 'connections reached both workers');
  return by;
}

/** Poll `fn` until it returns true; resolves with the elapsed ms (fails past `limitMs`). */
async function within(limitMs: number, what: string, fn: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - t0;
    if (Date.now() - t0 > limitMs) assert.fail(`${what}: not seen within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ADMIN_PROBE = { method: 'DescribeTenant', req: { org: 'acme', tenant: 'alpha' } };
const SVC_PROBE = { method: 'Encrypt', req: ENC };

test('calls land on both workers: x-broker-id, /readyz and /metrics name w1 and w2', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const a = await call(ownClient('service').crypto, 'Encrypt', ENC);
    assert.equal(a.err, undefined, `Encrypt #${i}: ${a.err?.details}`);
    seen.add(a.broker as string);
  }
  assert.deepEqual([...seen].sort(), ['w1', 'w2'], 'eight connections spread over both workers');
  const ready = JSON.parse((await d.metrics('/readyz')).body) as {
    brokers: { broker: string; ready: boolean }[];
  };
  assert.deepEqual(
    ready.brokers.map((b) => [b.broker, b.ready]),
    [
      ['w1', true],
      ['w2', true],
    ],
    '/readyz lists each worker',
  );
  const m = (await d.metrics('/metrics')).body;
  for (const w of ['w1', 'w2'])
    assert.match(
      m,
      new RegExp(`keybroker_rpc_requests_total\\{[^}]*broker="${w}"`),
      `/metrics has series of ${w}`,
    );
});

test('rotation, version disable and customer shred on one worker hold on the other within 1 s', async () => {
  const admins = await onEachWorker('admin', (c) => c.admin, ADMIN_PROBE);
  const svcs = await onEachWorker('service', (c) => c.crypto, SVC_PROBE);
  const cases = [
    { writer: 'w1', reader: 'w2', customer: 'cw-a' },
    { writer: 'w2', reader: 'w1', customer: 'cw-b' },
  ];
  for (const k of cases) {
    const admin = (admins.get(k.writer) as KeybrokerClient).admin;
    const svc = (svcs.get(k.reader) as KeybrokerClient).crypto;
    const A = async (m: string, req: object) => {
      const a = await call(admin, m, req);
      assert.equal(a.err, undefined, `${m} on ${k.writer}: ${a.err?.details}`);
      assert.equal(a.broker, k.writer, `${m} served by ${k.writer}`);
      return a.res as R;
    };
    const ref = { org: 'acme', tenant: 'alpha', customer: k.customer };
    await A('CreateCustomer', ref);
    // Warm the reader's caches (metadata, CEK v1).
    const v1 = await call(svc, 'Encrypt', { ...ENC, customer: k.customer });
    assert.equal(v1.broker, k.reader);
    assert.equal(v1.res?.keyVersion, 1, `${k.customer}: first version`);

    await A('RotateCustomerKey', ref);
    const rotMs = await within(
      1000,
      `${k.reader} encrypts under v2 after a rotation on ${k.writer}`,
      async () => {
        const a = await call(svc, 'Encrypt', { ...ENC, customer: k.customer });
        return a.res?.keyVersion === 2;
      },
    );

    await A('SetKeyVersionEnabled', { ...ref, version: 1, enabled: false });
    const disMs = await within(1000, `${k.reader} refuses v1 after a disable on ${k.writer}`, async () => {
      const a = await call(svc, 'Decrypt', { ciphertext: v1.res?.ciphertext, aad: ENC.aad });
      return a.err !== undefined;
    });

    const v2 = await call(svc, 'Encrypt', { ...ENC, customer: k.customer });
    assert.equal(v2.res?.keyVersion, 2);
    const receipt = await A('DestroyCustomer', ref);
    assert.ok(receipt.receipt, 'DestroyCustomer returned a receipt');
    // The receipt came only after every worker dropped the keys: no window to wait for.
    const after = await call(svc, 'Decrypt', { ciphertext: v2.res?.ciphertext, aad: ENC.aad });
    assert.equal(after.broker, k.reader);
    assert.ok(
      after.err !== undefined,
      `${k.reader} still decrypted a shredded customer's data after its receipt`,
    );
    assert.notEqual(after.err.code, GrpcCode.OK);
    await d.waitFor(
      (l) => l.msg === 'cluster: dropped shredded keys' && l.broker === k.reader && l.customer === k.customer,
      5000,
    );
    process.stdout.write(
      `# ${k.writer}->${k.reader}: rotation seen in ${rotMs} ms, disable in ${disMs} ms\n`,
    );
  }
});

test('a policy written on one worker is in force on the other within 1 s; approval steps are seen at once', async () => {
  const admins = await onEachWorker('admin', (c) => c.policy, { method: 'GetPolicy', req: {} });
  const sha = (t: string) => createHash('sha256').update(t, 'utf8').digest('hex');
  for (const [writer, reader, indent] of [
    ['w1', 'w2', 1],
    ['w2', 'w1', 2],
  ] as const) {
    const text = JSON.stringify(JSON.parse(DEFAULT_POLICY_TEXT), null, indent);
    const set = await call((admins.get(writer) as KeybrokerClient).policy, 'SetPolicy', { policyJson: text });
    assert.equal(set.err, undefined, `SetPolicy on ${writer}: ${set.err?.details}`);
    assert.equal(set.broker, writer);
    const ms = await within(1000, `${reader} has the policy set on ${writer}`, async () => {
      const g = await call((admins.get(reader) as KeybrokerClient).policy, 'GetPolicy', {});
      assert.equal(g.broker, reader);
      return g.res?.policySha256 === sha(text);
    });
    process.stdout.write(`# policy ${writer}->${reader}: ${ms} ms\n`);
  }

  const alice = await onEachWorker(await d.issueClient('spiffe://acme/admin/alice'), (c) => c.approvals, {
    method: 'ListApprovals',
    req: { org: 'acme' },
  });
  const bob = await onEachWorker(await d.issueClient('spiffe://acme/admin/bob'), (c) => c.approvals, {
    method: 'ListApprovals',
    req: { org: 'acme' },
  });
  const req = await call((alice.get('w1') as KeybrokerClient).approvals, 'RequestApproval', {
    org: 'acme',
    operation: 'APPROVAL_OPERATION_DESTROY_CUSTOMER',
    tenant: 'alpha',
    customer: 'default',
  });
  assert.equal(req.err, undefined, `RequestApproval on w1: ${req.err?.details}`);
  const id = String((req.res?.approval as R).approvalId);
  const ok = await call((bob.get('w2') as KeybrokerClient).approvals, 'ApproveRequest', { approvalId: id });
  assert.equal(ok.err, undefined, `ApproveRequest on w2 of a request made on w1: ${ok.err?.details}`);
  const listed = await call((alice.get('w1') as KeybrokerClient).approvals, 'ListApprovals', { org: 'acme' });
  const a = ((listed.res?.approvals ?? []) as R[]).find((x) => x.approvalId === id);
  assert.equal(a?.status, 'APPROVAL_STATUS_APPROVED', 'w1 sees the approval given on w2 at once');
  const cancel = await call((alice.get('w2') as KeybrokerClient).approvals, 'CancelApproval', {
    approvalId: id,
  });
  assert.equal(cancel.err, undefined, `CancelApproval on w2: ${cancel.err?.details}`);
});

test('a worker that cannot confirm a shred is killed (and restarted) before the receipt is signed', async () => {
  const admins = await onEachWorker('admin', (c) => c.admin, ADMIN_PROBE);
  const health = JSON.parse((await d.metrics('/healthz')).body) as {
    brokers: { broker: string; pid: number }[];
  };
  const w2 = health.brokers.find((b) => b.broker === 'w2');
  assert.ok(w2, 'w2 in /healthz');
  const admin = (admins.get('w1') as KeybrokerClient).admin;
  const ref = { org: 'acme', tenant: 'alpha', customer: 'frozen' };
  assert.equal((await call(admin, 'CreateCustomer', ref)).err, undefined);
  const forkedBefore = d.lines.filter((l) => l.msg === 'cluster: worker forked').length;
  process.kill(w2.pid, 'SIGSTOP'); // alive, but answers nothing
  try {
    const t0 = Date.now();
    const a = await call(admin, 'DestroyCustomer', ref);
    assert.equal(a.err, undefined, `DestroyCustomer: ${a.err?.details}`);
    assert.ok(Date.now() - t0 >= 2500, 'the receipt waited for the silent worker');
    assert.throws(() => process.kill(w2.pid, 0), /ESRCH/, 'the silent worker was killed before the receipt');
    await d.waitFor(
      (l) =>
        l.msg === 'cluster: worker did not confirm dropping shredded keys: killing it before the receipt',
      5000,
    );
  } finally {
    try {
      process.kill(w2.pid, 'SIGCONT');
    } catch (err) {
      void err; // already gone: that is the point
    }
  }
  await within(
    120_000,
    'w2 restarted',
    async () => d.lines.filter((l) => l.msg === 'cluster: worker forked').length > forkedBefore,
  );
  await within(120_000, 'both workers ready again', async () => {
    const r = JSON.parse((await d.metrics('/readyz')).body) as { brokers: { ready: boolean }[] };
    return r.brokers.every((b) => b.ready);
  });
});

test('SIGKILL of the singleton worker under load: restarted, the other takes the singletons, no acknowledged write or ciphertext lost', async () => {
  const admin = () => ownClient('admin').admin;
  const acked: { customer: string }[] = [];
  const sealed: { ct: Buffer; pt: Buffer }[] = [];
  let stop = false;
  let failures = 0;
  let killed = false;
  const servedBefore = new Set<string>();
  const loop = async (n: number) => {
    let a = admin();
    let s = ownClient('service').crypto;
    for (let i = 0; !stop; i++) {
      const customer = `load-${n}-${i}`;
      for (let tries = 0; tries < 50; tries++) {
        const r = await call(a, 'CreateCustomer', { org: 'acme', tenant: 'alpha', customer });
        if (!killed && r.broker !== undefined) servedBefore.add(r.broker);
        if (r.err === undefined || r.err.code === GrpcCode.ALREADY_EXISTS) {
          acked.push({ customer });
          break;
        }
        failures++;
        a = admin(); // retry on a fresh connection (the broker behind the old one may be gone)
        await new Promise((res) => setTimeout(res, 50));
      }
      const pt = Buffer.from(`payload ${n}/${i}`);
      const e = await call(s, 'Encrypt', { plaintext: pt, aad: ENC.aad });
      if (e.err === undefined) sealed.push({ ct: e.res?.ciphertext as Buffer, pt });
      else {
        failures++;
        s = ownClient('service').crypto;
      }
    }
  };
  const loops = [0, 1, 2, 3].map(loop);
  await new Promise((r) => setTimeout(r, 1000));
  // The victim is the worker that runs the singletons: the other one must take them over.
  const leaders = d.lines.filter((l) => l.msg === 'cluster: singletons run on this worker');
  const leader = String(leaders.at(-1)?.broker);
  const other = leader === 'w1' ? 'w2' : 'w1';
  const health = JSON.parse((await d.metrics('/healthz')).body) as {
    brokers: { broker: string; pid: number }[];
  };
  const victim = health.brokers.find((b) => b.broker === leader) as { pid: number };
  killed = true;
  process.kill(victim.pid, 'SIGKILL');
  await within(120_000, `${leader} back`, async () => {
    const h = JSON.parse((await d.metrics('/readyz')).body) as {
      brokers: { broker: string; pid: number; ready: boolean }[];
    };
    const w = h.brokers.find((b) => b.broker === leader);
    return w !== undefined && w.pid !== victim.pid && w.ready;
  });
  await d.waitFor((l) => l.msg === 'cluster: singletons run on this worker' && l.broker === other, 5000);
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(loops);
  assert.ok(acked.length > 10, `load made progress (${acked.length} writes)`);
  assert.ok(
    servedBefore.has(leader),
    `the killed worker was serving writes (${[...servedBefore].join(',')})`,
  );
  const list = await call(ownClient('admin').admin, 'ListCustomers', { org: 'acme', tenant: 'alpha' });
  const have = new Set(((list.res?.customers ?? []) as R[]).map((c) => c.customer));
  const lost = acked.filter((w) => !have.has(w.customer));
  assert.deepEqual(lost, [], 'every acknowledged CreateCustomer is there');
  const svc = ownClient('service').crypto;
  for (const s of sealed) {
    const r = await call(svc, 'Decrypt', { ciphertext: s.ct, aad: ENC.aad });
    assert.equal(r.err, undefined, `an acknowledged ciphertext does not decrypt: ${r.err?.details}`);
    assert.deepEqual(r.res?.plaintext, s.pt, 'never a wrong plaintext');
  }
  process.stdout.write(`# ${acked.length} writes, ${sealed.length} ciphertexts, ${failures} retried calls\n`);
});

test('each worker keeps its own audit chain; audit verify --dir checks both and merges a timeline', async () => {
  assert.equal(await d.stop(), 0, 'cluster exit code after SIGTERM');
  const dir = join(d.dataDir, 'audit');
  const r = runCli('audit', 'verify', '--dir', dir, '--public-key', join(dir, 'audit-key.pem'), '--timeline');
  assert.equal(r.status, 0, `audit verify --dir: ${r.stdout}${r.stderr}`);
  const lines = r.stdout.split('\n');
  for (const w of ['w1', 'w2'])
    assert.ok(
      lines.some((l) => l.startsWith('OK ') && l.includes(`audit-w${w.slice(1)}.log`)),
      `chain of ${w} verified: ${r.stdout.slice(0, 400)}`,
    );
  const timeline = lines
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { chain: string; time: string });
  assert.ok(
    new Set(timeline.map((t) => t.chain)).size >= 2,
    `the timeline has entries of both chains: ${lines.filter((l) => !l.startsWith('{')).join(' | ')}`,
  );
  const times = timeline.map((t) => Date.parse(t.time));
  assert.deepEqual(
    times,
    [...times].sort((a, b) => a - b),
    'the timeline is ordered by time',
  );
  // A tampered chain fails the whole folder.
  const bad = runCli('audit', 'verify', '--dir', join(d.dataDir, 'nope'));
  assert.notEqual(bad.status, 0, 'a missing folder fails');
});
