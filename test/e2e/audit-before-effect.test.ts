/**
 * Audit before effect (review M2) on the real daemon over gRPC + mTLS, SoftHSM2 and SQLite, with
 * the two-person rule on:
 * - with the audit filesystem full (a small tmpfs, root only), CreateTenant and an approved
 *   DestroyCustomer answer UNAVAILABLE and take no effect (the tenant does not exist, the
 *   customer still works, the approval is still usable), and neither left a record;
 * - an ApproveRequest while the disk is full leaves the approval pending;
 * - an approved DestroyTenant with a short deadline leaves records that say what happened: an
 *   intent and its real outcome, never only `error DEADLINE_EXCEEDED` for a destroy that completed.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;

const base = mkdtempSync(join(tmpdir(), 'kb-audit-effect-'));
const auditDir = join(base, 'auditfs');
mkdirSync(auditDir);
let mounted = false;
if (process.getuid?.() === 0) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', auditDir], { stdio: 'pipe' });
    mounted = true;
  } catch {
    mounted = false;
  }
}
const auditPath = join(auditDir, 'audit.log');

let d: DaemonHandle;
let dataDir: string;
let root: KeybrokerClient;
let bob: KeybrokerClient;
let svc: KeybrokerClient;

before(async () => {
  dataDir = await initTestDataDir();
  d = await startDaemon({ dataDir, env: { KB_AUDIT_PATH: auditPath }, twoPersonRule: true });
  root = d.client('admin');
  bob = d.client(await d.issueClient('spiffe://acme/admin/bob'));
  svc = d.client('service');
});
after(async () => {
  if (d !== undefined) assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  if (mounted) execFileSync('umount', [auditDir]);
  rmSync(base, { recursive: true, force: true });
  if (dataDir !== undefined) removeDataDir(dataDir);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const recordsOf = async (requestId: string) =>
  (await queryAudit(auditPath, {})).filter((r) => r.requestId === requestId);

/** request (root) + approve (bob): the approval id. */
async function approve(operation: string, target: R): Promise<string> {
  const req = await root.approvals.unary<R>('RequestApproval', { operation, org: 'acme', ...target });
  const id = (req.approval as { approvalId: string }).approvalId;
  await bob.approvals.unary('ApproveRequest', { approvalId: id });
  return id;
}

async function approvalStatus(id: string): Promise<string> {
  const r = await root.approvals.unary<R>('ListApprovals', { org: 'acme' });
  const a = (r.approvals as { approvalId: string; status: string }[]).find((x) => x.approvalId === id);
  return a?.status ?? 'missing';
}

function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

test(
  'audit disk full: CreateTenant, an approved DestroyCustomer and an approve are refused and take no effect',
  { skip: mounted ? false : 'needs root and mount(8) for a small tmpfs' },
  async () => {
    await root.admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
    await root.admin.unary('CreateCustomer', { org: 'acme', tenant: 'beta', customer: 'c1' });
    const destroyCustomer = await approve('APPROVAL_OPERATION_DESTROY_CUSTOMER', {
      tenant: 'beta',
      customer: 'c1',
    });
    const pending = await root.approvals.unary<R>('RequestApproval', {
      operation: 'APPROVAL_OPERATION_DESTROY_TENANT',
      org: 'acme',
      tenant: 'beta',
    });
    const pendingId = (pending.approval as { approvalId: string }).approvalId;

    const filler = join(auditDir, 'filler');
    fill(filler);
    try {
      // The last partly filled page of the log may take a few more lines before ENOSPC.
      let failed: ServiceError | undefined;
      for (let i = 0; i < 300 && failed === undefined; i++) {
        await svc.crypto.unary('Encrypt', { plaintext: Buffer.from('x') }).catch((e: ServiceError) => {
          failed = e;
        });
      }
      assert.equal(failed?.code, GrpcCode.UNAVAILABLE, 'the audit log has failed');
      const refused: [string, Promise<unknown>][] = [
        [
          'CreateTenant',
          root.admin.unary('CreateTenant', { org: 'acme', tenant: 'gamma' }, { requestId: 'full-ct' }),
        ],
        [
          'DestroyCustomer',
          root.admin.unary(
            'DestroyCustomer',
            { org: 'acme', tenant: 'beta', customer: 'c1', approvalId: destroyCustomer },
            { requestId: 'full-dc' },
          ),
        ],
        [
          'ApproveRequest',
          bob.approvals.unary('ApproveRequest', { approvalId: pendingId }, { requestId: 'full-ap' }),
        ],
      ];
      for (const [name, p] of refused)
        await expectCode(p, GrpcCode.UNAVAILABLE, `${name} while the audit disk is full`);
    } finally {
      unlinkSync(filler);
    }
    // Wait for the sink's probe to recover.
    let ok = false;
    for (let i = 0; i < 100 && !ok; i++) {
      ok = (await d.metrics('/readyz')).status === 200;
      if (!ok) await sleep(100);
    }
    assert.ok(ok, '/readyz back once space returns');

    await expectCode(
      root.admin.unary('DescribeTenant', { org: 'acme', tenant: 'gamma' }),
      GrpcCode.NOT_FOUND,
      'the tenant CreateTenant was refused for does not exist',
    );
    const c = await root.admin.unary<R>('DescribeCustomer', { org: 'acme', tenant: 'beta', customer: 'c1' });
    assert.equal((c.customer as R).customer, 'c1', 'the customer was not destroyed');
    assert.equal(await approvalStatus(destroyCustomer), 'APPROVAL_STATUS_APPROVED', 'approval not consumed');
    assert.equal(await approvalStatus(pendingId), 'APPROVAL_STATUS_PENDING', 'approve not taken');
    for (const rid of ['full-ct', 'full-dc', 'full-ap'])
      assert.deepEqual(await recordsOf(rid), [], `${rid}: nothing done, nothing recorded`);

    // The same approval now does the destroy, with its intent and outcome on record.
    await root.admin.unary(
      'DestroyCustomer',
      { org: 'acme', tenant: 'beta', customer: 'c1', approvalId: destroyCustomer },
      { requestId: 'after-dc' },
    );
    assert.deepEqual(
      (await recordsOf('after-dc')).map((r) => r.result),
      ['intent', 'ok'],
    );
  },
);

test('an approved DestroyTenant with a short deadline: the records say what really happened', async (t) => {
  // Several deadlines: some calls are refused before they start, others finish after the caller
  // gave up; either way the last record must match the tenant's real state.
  for (const [i, deadlineMs] of [1, 20, 60, 150].entries()) {
    const tenant = `dl${i}`;
    await root.admin.unary('CreateTenant', { org: 'acme', tenant });
    const id = await approve('APPROVAL_OPERATION_DESTROY_TENANT', { tenant });
    const rid = `deadline-${i}`;
    const answer = await root.admin
      .unary('DestroyTenant', { org: 'acme', tenant, approvalId: id }, { requestId: rid, deadlineMs })
      .then(
        () => GrpcCode.OK,
        (e: ServiceError) => e.code,
      );
    // The outcome record is written when the destroy really ends, maybe after the answer.
    let recs = await recordsOf(rid);
    for (let n = 0; n < 100 && !recs.some((r) => r.result !== 'intent'); n++) {
      await sleep(100);
      recs = await recordsOf(rid);
    }
    const exists = await root.admin.unary('DescribeTenant', { org: 'acme', tenant }).then(
      () => true,
      (e: ServiceError) => (e.code === GrpcCode.NOT_FOUND ? false : Promise.reject(e)),
    );
    const results = recs.map((r) => r.result + (r.code ? `:${r.code}` : ''));
    const what = `deadline ${deadlineMs} ms: answer ${answer}, records ${results.join(',')}, tenant ${exists ? 'kept' : 'destroyed'}`;
    t.diagnostic(what);
    if (exists) {
      assert.deepEqual(results, ['error:DEADLINE_EXCEEDED'], `refused before it started: ${what}`);
      assert.equal(await approvalStatus(id), 'APPROVAL_STATUS_APPROVED', `approval unused: ${what}`);
    } else {
      assert.deepEqual(results, ['intent', 'ok'], `destroyed, and the records say so: ${what}`);
      assert.equal(await approvalStatus(id), 'APPROVAL_STATUS_EXECUTED', what);
    }
  }
});
