// Issue 18 item 9, the approval side, on a real ApprovalStore (SQLite file) above the broker
// interface: an approval consumed by a destroy that crashed is never stuck at "approval is
// executed". If the destroy was recorded, a retry with the approval gets that shred's receipt;
// if the daemon died before recording it (nothing destroyed), the approval works again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Governance } from '../../daemon/src/api/approvals-service.ts';
import type { AuditFacts, CallContext } from '../../daemon/src/api/call-gate.ts';
import { withShredApproval } from '../../daemon/src/api/shred-approval.ts';
import { KbError } from '../../daemon/src/errors.ts';
import type { KeyBrokerApi, ShredReceipt } from '../../daemon/src/keys/key-broker-api.ts';
import { ApprovalStore } from '../../daemon/src/policy/approvals.ts';
import { caller } from './policy-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'kb-shred-approval-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const alice = caller('spiffe://acme/admin/alice', ['admin']);
const bob = caller('spiffe://acme/admin/bob', ['admin']);
const target = { org: 'acme', tenant: 't1' };
const RECEIPT: ShredReceipt = {
  body: '{"v":2}',
  signatureAlgorithm: 'ecdsa-p256-sha256',
  signature: 'c2ln',
  publicKeyPem: 'pem',
};

function setup(name: string) {
  const approvals = new ApprovalStore({ path: join(dir, `${name}.db`) });
  const g = {
    approvals,
    policy: {} as never,
    fipsMode: () => false,
    twoPersonRule: () => true,
    persistPolicy: () => undefined,
  } as Governance;
  const ctx = (who: typeof alice, requestId: string) =>
    ({ identity: who, requestId, rpc: 'keybroker.v1.Admin/DestroyTenant' }) as unknown as CallContext;
  return { approvals, g, ctx };
}

async function approved(approvals: ApprovalStore): Promise<string> {
  const a = await approvals.request(alice, 'destroy-tenant', target, 'r1');
  await approvals.approve(bob, a.approval.id, 'r2');
  return a.approval.id;
}

test('a crash after the destroy was recorded: the retry gets the resumed shred receipt', async () => {
  const { approvals, g, ctx } = setup('recorded');
  const id = await approved(approvals);
  // The first call consumed the approval and recorded the destroy, then the daemon died.
  await approvals.execute(alice, id, 'destroy-tenant', target, 'r3');
  let destroys = 0;
  const broker = {
    shredReceiptForApproval: (a: string, t: object) =>
      Promise.resolve(a === id && JSON.stringify(t) === JSON.stringify(target) ? RECEIPT : undefined),
  } as unknown as KeyBrokerApi;
  const facts: AuditFacts = {};
  const r = await withShredApproval(g, broker, ctx(alice, 'r4'), facts, id, 'destroy-tenant', target, () => {
    destroys++;
    return Promise.resolve(RECEIPT);
  });
  assert.equal(r, RECEIPT, 'the recorded shred receipt');
  assert.equal(destroys, 0, 'no second destroy');
  assert.match(facts.reason ?? '', /already recorded.*receipt sha256 [0-9a-f]{16}(:[0-9a-f]{16}){3}/);
});

test('a crash before the destroy was recorded: the consumed approval works again', async () => {
  const { approvals, g, ctx } = setup('unrecorded');
  const id = await approved(approvals);
  await approvals.execute(alice, id, 'destroy-tenant', target, 'r3'); // consumed, then the crash
  // A broker that records its destroys by approval id (as shred_intents does).
  let recorded: string | undefined;
  const broker = {
    shredReceiptForApproval: (a: string) => Promise.resolve(a === recorded ? RECEIPT : undefined),
    describeTenant: () =>
      recorded === undefined ? Promise.resolve({}) : Promise.reject(new KbError('NOT_FOUND', 'tenant')),
  } as unknown as KeyBrokerApi;
  const seen: (string | undefined)[] = [];
  const run = (a: string | undefined) => {
    seen.push(a);
    recorded = a;
    return Promise.resolve(RECEIPT);
  };
  // Another admin cannot use (or release) alice's approval.
  await assert.rejects(
    withShredApproval(g, broker, ctx(bob, 'r4'), {}, id, 'destroy-tenant', target, run),
    (e: unknown) => e instanceof KbError,
  );
  assert.equal(approvals.list('acme', 'executed')[0]?.id, id, 'still consumed after bob tried');
  const r = await withShredApproval(g, broker, ctx(alice, 'r5'), {}, id, 'destroy-tenant', target, run);
  assert.equal(r, RECEIPT);
  assert.deepEqual(seen, [id], 'the destroy ran once, recording the approval id');
  assert.equal(approvals.list('acme', 'executed')[0]?.id, id, 'consumed by the successful run');
  // Used now for real: a third call gets the recorded receipt and destroys nothing more.
  assert.equal(
    await withShredApproval(g, broker, ctx(alice, 'r6'), {}, id, 'destroy-tenant', target, run),
    RECEIPT,
  );
  assert.deepEqual(seen, [id], 'still one destroy');
});
