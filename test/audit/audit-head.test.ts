// The signed chain head (review L5): the verifier takes the algorithm from the pinned key, an
// unsigned tail is an error unless allowed, the last checkpoint is pinned in the registry (a real
// registry.db, migration 3) so a forged tail or a cut made while the daemon was stopped refuses
// the next open, and the log rotates into segments whose chain verifies across files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { auditSegments, queryAudit, tailAudit } from '../../daemon/src/audit/audit-reader.ts';
import { canonicalBytes, chainHash, entryLine } from '../../daemon/src/audit/audit-record.ts';
import type { RecordEntry } from '../../daemon/src/audit/audit-record.ts';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { createSoftwareSigner } from '../../daemon/src/audit/checkpoint.ts';
import type { CheckpointSigner } from '../../daemon/src/audit/checkpoint.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { KbError } from '../../daemon/src/errors.ts';
import { RegistryAuditHead } from '../../daemon/src/store/registry-audit-head.ts';
import { RegistryStore } from '../../daemon/src/store/registry-store.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';
import { rec } from './audit-fixtures.ts';

const MAIN = join(REPO_ROOT, 'daemon/src/cli/main.ts');
const base = mkdtempSync(join(tmpdir(), 'kb-audit-head-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, 'audit', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** A fresh directory with a log path, a real registry and its pinned-head store. */
function fresh() {
  const dir = join(base, `d${++n}`);
  const registry = RegistryStore.open(join(base, `registry-${n}.db`));
  const head = new RegistryAuditHead(registry);
  return { dir, path: join(dir, 'audit.log'), registry, head };
}

/** Append a record with a correctly recomputed chain hash, as a forger with write access would. */
function forgeRecord(path: string): void {
  const text = readFileSync(path, 'utf8').trimEnd().split('\n');
  const last = JSON.parse(text.at(-1) ?? '{}') as { seq: number; hash: string };
  const entry: RecordEntry = {
    type: 'record',
    seq: last.seq + 1,
    timeMs: Date.UTC(2026, 5, 1),
    requestId: 'forged',
    identity: 'spiffe://acme/admin/mallory',
    org: 'acme',
    rpc: 'keybroker.v1.Admin/DestroyTenant',
    result: 'ok',
  };
  const hash = chainHash(Buffer.from(last.hash, 'hex'), canonicalBytes(entry)).toString('hex');
  appendFileSync(path, entryLine(entry, hash));
}

const isRefusal = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof KbError, String(e));
  assert.equal(e.code, 'AUDIT_UNAVAILABLE');
  assert.match(e.safeMessage + (e.detail ?? ''), re);
  assert.match(e.safeMessage + (e.detail ?? ''), /keybroker audit reset-head/);
  return true;
};

/** The refusal text (KbError keeps its detail for the log; the message names the command). */
async function openWith(path: string, signer: CheckpointSigner, head: RegistryAuditHead, over = {}) {
  return FileAuditSink.open({ path, signer, headStore: head, ...over });
}

describe('audit verify takes the algorithm from the pinned key, never from the entry', () => {
  it('an RSA key with entries claiming ecdsa-p256 (PKCS#1 v1.5 signatures) is refused', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const liar: CheckpointSigner = {
      alg: 'ecdsa-p256',
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      sign: async (bytes) => sign('sha256', bytes, privateKey),
    };
    const { path } = fresh();
    const sink = await FileAuditSink.open({ path, signer: liar, checkpointEvery: 3 });
    for (let i = 1; i <= 5; i++) await sink.append(rec(i));
    await sink.close();
    const r = await verifyAuditFile(path, { publicKeys: [liar.publicKeyPem] });
    assert.equal(r.ok, false, 'refused');
    assert.match(r.firstBad?.problem ?? '', /names alg ecdsa-p256 but the pinned key is rsa-pss-sha256-3072/);
  });

  it('the matching algorithm still verifies (ECDSA P-256 and ML-DSA-65)', async () => {
    for (const alg of ['ecdsa-p256', 'ml-dsa-65'] as const) {
      const signer = createSoftwareSigner(alg);
      const { path } = fresh();
      const sink = await FileAuditSink.open({ path, signer, checkpointEvery: 3 });
      for (let i = 1; i <= 5; i++) await sink.append(rec(i));
      await sink.close();
      const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem], requireSignedTail: true });
      assert.equal(r.ok, true, `${alg}: ${JSON.stringify(r.firstBad)}`);
      assert.equal(r.checkpointsVerified, r.checkpoints);
    }
  });
});

describe('a forged tail', () => {
  it('fails `audit verify` (exit 1) unless --allow-unsigned-tail', async () => {
    const signer = createSoftwareSigner();
    const { path, dir } = fresh();
    const sink = await FileAuditSink.open({ path, signer, checkpointEvery: 4 });
    for (let i = 1; i <= 6; i++) await sink.append(rec(i));
    await sink.close();
    const keyFile = join(base, `key-${n}.pem`);
    writeFileSync(keyFile, signer.publicKeyPem);
    assert.equal(cli('verify', '--file', path, '--public-key', keyFile).code, 0, 'clean log verifies');
    forgeRecord(path);
    const r = cli('verify', '--file', path, '--public-key', keyFile);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /unsigned tail: entries 9\.\.9/);
    const allowed = cli('verify', '--file', path, '--public-key', keyFile, '--allow-unsigned-tail');
    assert.equal(allowed.code, 0, allowed.out);
    assert.match(allowed.out, /unsigned tail accepted: entries 9\.\.9/);
    assert.ok(existsSync(dir));
  });

  it('a --key-fingerprint that does not match the key is refused; the right one is accepted', async () => {
    const signer = createSoftwareSigner();
    const other = createSoftwareSigner();
    const { path } = fresh();
    const sink = await FileAuditSink.open({ path, signer });
    await sink.append(rec(1));
    await sink.close();
    const keyFile = join(base, `key-${n}.pem`);
    writeFileSync(keyFile, signer.publicKeyPem);
    const { keyIdOf } = await import('../../daemon/src/audit/checkpoint.ts');
    const bad = cli(
      'verify',
      '--file',
      path,
      '--public-key',
      keyFile,
      '--key-fingerprint',
      keyIdOf(other.publicKeyPem),
    );
    assert.notEqual(bad.code, 0, bad.out);
    assert.match(bad.out, /is not pinned/);
    const good = cli(
      'verify',
      '--file',
      path,
      '--public-key',
      keyFile,
      '--key-fingerprint',
      keyIdOf(signer.publicKeyPem),
    );
    assert.equal(good.code, 0, good.out);
  });

  it('written while the daemon was stopped: the next open refuses to sign over it', async () => {
    const signer = createSoftwareSigner();
    const { path, head } = fresh();
    const sink = await openWith(path, signer, head);
    for (let i = 1; i <= 5; i++) await sink.append(rec(i));
    await sink.close();
    assert.equal(head.load()?.state, 'stopped');
    forgeRecord(path);
    const forged = readFileSync(path);
    await assert.rejects(
      openWith(path, signer, head),
      isRefusal(/appended after the checkpoint of the last clean shutdown/),
    );
    assert.deepEqual(readFileSync(path), forged, 'nothing signed over it: the file is untouched');
    // The operator investigates, then resets the pin: the next open records the break and signs.
    head.reset();
    const again = await openWith(path, signer, head);
    await again.close();
    const text = readFileSync(path, 'utf8');
    assert.match(text, /pinned audit head reset by an operator/);
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem], requireSignedTail: true });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
  });

  it('a tail cut while stopped refuses the next open', async () => {
    const signer = createSoftwareSigner();
    const { path, head } = fresh();
    const sink = await openWith(path, signer, head);
    for (let i = 1; i <= 5; i++) await sink.append(rec(i));
    await sink.close();
    const lines = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, `${lines.slice(0, -3).join('\n')}\n`); // the final checkpoint and a record gone
    await assert.rejects(openWith(path, signer, head), isRefusal(/entries cut off/));
  });

  it('an altered pinned checkpoint refuses the next open', async () => {
    const signer = createSoftwareSigner();
    const { path, head } = fresh();
    const sink = await openWith(path, signer, head);
    await sink.append(rec(1));
    await sink.close();
    const pinned = head.load();
    assert.ok(pinned);
    head.save({ ...pinned, hash: '0'.repeat(64) });
    await assert.rejects(openWith(path, signer, head), isRefusal(/is not the pinned checkpoint/));
  });

  it('after a crash the unsigned tail is expected: noted, signed at start, and the log verifies', async () => {
    const signer = createSoftwareSigner();
    const { path, head, dir } = fresh();
    const sink = await openWith(path, signer, head);
    for (let i = 1; i <= 5; i++) await sink.append(rec(i));
    // No close (a crash): the lock is left behind, and the pin still says running.
    assert.equal(head.load()?.state, 'running');
    writeFileSync(join(dir, 'audit.log.lock'), '999999999\n');
    const again = await openWith(path, signer, head);
    await again.append(rec(6));
    await again.close();
    assert.match(
      readFileSync(path, 'utf8'),
      /unclean shutdown: entries 1\.\.5 after the last signed checkpoint \(seq 0\)/,
    );
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem], requireSignedTail: true });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
  });
});

describe('rotation into segments', () => {
  it('by size: segments named by their first seq, each ends signed, the chain verifies across files', async () => {
    const signer = createSoftwareSigner();
    const { path, head, dir } = fresh();
    let sink = await openWith(path, signer, head, { rotateBytes: 2000, maxLingerMs: 0 });
    for (let i = 1; i <= 40; i++) await sink.append(rec(i));
    await sink.close();
    const segs = auditSegments(path);
    assert.ok(segs.length >= 3, `several segments: ${readdirSync(dir).join(', ')}`);
    assert.match(segs[0] ?? '', /audit\.log\.000000000001$/);
    for (const s of segs.slice(0, -1)) {
      const lines = readFileSync(s, 'utf8').trimEnd().split('\n');
      const lastEntry = JSON.parse(lines.at(-1) ?? '{}') as { type: string };
      assert.equal(lastEntry.type, 'checkpoint', `${s} ends with a signed checkpoint`);
      const firstSeq = (JSON.parse(lines[0] ?? '{}') as { seq: number }).seq;
      assert.ok(s.endsWith(String(firstSeq).padStart(12, '0')), `${s} is named by its first seq`);
    }
    // Reopen: the chain continues from the last segment.
    sink = await openWith(path, signer, head, { rotateBytes: 2000 });
    await sink.append(rec(41));
    await sink.close();
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem], requireSignedTail: true });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 41);
    assert.equal((await queryAudit(path, {})).length, 41, 'query reads every segment');
    assert.deepEqual(
      (await tailAudit(path, r.entries)).map((e) => e.seq),
      Array.from({ length: r.entries }, (_, i) => i + 1),
      'tail reaches back across segments',
    );
    // A segment taken away breaks the chain and says where.
    rmSync(segs[1] ?? '');
    const broken = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem] });
    assert.equal(broken.ok, false);
    assert.match(broken.firstBad?.problem ?? '', /seq \d+ found where \d+ expected/);
    assert.ok(broken.firstBad?.file?.endsWith('.log') || broken.firstBad?.file?.includes('audit.log.'));
  });

  it('by age: a file whose first entry is older than rotateIntervalMs is rotated at the next write', async () => {
    const signer = createSoftwareSigner();
    const { path, head } = fresh();
    let t = Date.UTC(2026, 0, 1);
    const sink = await openWith(path, signer, head, { rotateIntervalMs: 3_600_000, now: () => t });
    await sink.append(rec(1));
    t += 3_600_000;
    await sink.append(rec(2));
    await sink.close();
    const segs = auditSegments(path);
    assert.equal(segs.length, 2, segs.join(', '));
    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem], requireSignedTail: true });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 2);
  });
});

describe('the writer lock across PID namespaces', () => {
  it('a lock naming another PID namespace is never taken over, even when its pid is not alive here', async () => {
    const { path, dir } = fresh();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${path}.lock`, '2147483646\npid:[1]\n');
    await assert.rejects(FileAuditSink.open({ path }), (e: unknown) => {
      assert.ok(e instanceof KbError);
      assert.match(e.safeMessage, /another PID namespace \(pid:\[1\]\); remove .*audit\.log\.lock only if/);
      return true;
    });
    // The same dead pid in this namespace (or an old lock without one) is a stale lock: taken over.
    writeFileSync(`${path}.lock`, '2147483646\n');
    const sink = await FileAuditSink.open({ path });
    await sink.close();
    assert.equal(existsSync(`${path}.lock`), false, 'released on close');
  });
});
