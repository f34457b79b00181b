// The HSM worker-thread lane (AES-GCM, ECDSA) on real SoftHSM2: Wycheproof vectors through the
// worker's sync calls, typed Pkcs11Error across the thread boundary, *Init closed by *Final after
// a failure, per-job results inside mixed batches, ECDSA signatures verified by Node, agreement
// with the libuv C_*Async path, fault switch and shutdown with calls in flight.
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pkcs11js from 'pkcs11js';
import { KbError } from '../../daemon/src/errors.ts';
import type { HsmKeyRef } from '../../daemon/src/hsm/hsm.ts';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import type { HsmJob } from '../../daemon/src/hsm/hsm-worker.ts';
import { Pkcs11Error } from '../../daemon/src/hsm/pkcs11-error.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import { REPO_ROOT, createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';
import { rejectsWith } from './hsm-suite.ts';

const P = pkcs11js;

interface GcmVector {
  tcId: number;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface GcmGroup {
  keySize: number;
  ivSize: number;
  tagSize: number;
  tests: GcmVector[];
}

const hex = (s: string) => Buffer.from(s, 'hex');

describe('HSM worker lane: AES-GCM and ECDSA (SoftHSM2)', () => {
  let token: TestToken;
  let hsm: Pkcs11Hsm;
  let root: HsmKeyRef;

  const run = (job: HsmJob) => hsm.connection.withWorker((lane) => lane.run(job));
  /** An AES session object with a known value (the broker's own root keys are non-extractable). */
  const sessionKey = (value: Buffer) =>
    hsm.connection.withSession(async (s) =>
      hsm.connection.pkcs11.C_CreateObject(s.handle, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_ENCRYPT, value: true },
        { type: P.CKA_DECRYPT, value: true },
        { type: P.CKA_VALUE, value },
      ]),
    );

  before(async () => {
    token = createTestToken('kb-gcm-worker');
    hsm = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 200,
    });
    root = await hsm.generateRootKey('gcm-worker-root', { gcm: true });
  });
  after(async () => {
    await hsm?.close();
    token?.cleanup();
  });

  it('Wycheproof aes_gcm_test (256-bit keys, 96-bit IVs, 128-bit tags), all jobs at once', async () => {
    const file = resolve(REPO_ROOT, '../shared/vectors/wycheproof/aes_gcm_test.json');
    const groups = (JSON.parse(readFileSync(file, 'utf8')) as { testGroups: GcmGroup[] }).testGroups;
    const vectors = groups
      .filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128)
      .flatMap((g) => g.tests);
    assert.ok(vectors.length > 50, `only ${vectors.length} vectors of the broker's shape`);
    const keys = new Map<string, Buffer>();
    for (const v of vectors) if (!keys.has(v.key)) keys.set(v.key, await sessionKey(hex(v.key)));
    let skipped = 0;
    // Everything is submitted in one tick, so the vectors travel in shared batches with failures
    // in between: each job must get its own answer.
    const checks = vectors.map(async (v) => {
      const key = keys.get(v.key) ?? assert.fail('key object missing');
      const [iv, aad, msg] = [hex(v.iv), hex(v.aad), hex(v.msg)];
      const sealed = Buffer.concat([hex(v.ct), hex(v.tag)]);
      const what = `tcId ${v.tcId} (${v.result})`;
      const dec = run({ op: 'decrypt', key, iv, aad, data: sealed }).then(
        (pt) => ({ ok: true as const, pt }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      if (v.result === 'valid') {
        if (msg.length === 0)
          skipped++; // the Hsm boundary refuses empty plaintexts
        else
          assert.deepEqual(Buffer.from(await run({ op: 'encrypt', key, iv, aad, data: msg })), sealed, what);
        const d = await dec;
        assert.ok(d.ok, `${what}: decrypt failed with ${d.ok ? '' : String(d.err)}`);
        assert.deepEqual(Buffer.from(d.pt), msg, `${what}: decrypt`);
      } else if (v.result === 'invalid') {
        const d = await dec;
        assert.ok(!d.ok, `${what}: decrypt of an invalid vector returned a plaintext`);
        assert.ok(d.err instanceof Pkcs11Error, `${what}: wanted a Pkcs11Error, got ${String(d.err)}`);
        assert.equal(d.err.fn, 'C_Decrypt', `${what}: failing function`);
      }
    });
    await Promise.all(checks);
    assert.ok(skipped < vectors.length / 4, `skipped ${skipped} of ${vectors.length}`);
  });

  it('a Cryptoki failure crosses the thread as a typed Pkcs11Error (CKR name and function)', async () => {
    const bogus = Buffer.alloc(8, 0x7f);
    const err = await run({
      op: 'encrypt',
      key: bogus,
      iv: randomBytes(12),
      aad: Buffer.alloc(0),
      data: randomBytes(16),
    }).then(
      () => assert.fail('encrypt with a bogus key handle succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof Pkcs11Error, `wanted Pkcs11Error, got ${String(err)}`);
    assert.match(err.ckr, /^CKR_(KEY|OBJECT)_HANDLE_INVALID$/, `ckr ${err.ckr}`);
    assert.equal(err.fn, 'C_EncryptInit');
    assert.equal(err.kind, 'not-found');
  });

  it('after a failed decrypt the operation is closed: the same worker session keeps working', async () => {
    const key = await sessionKey(randomBytes(32));
    const iv = randomBytes(12);
    const pt = randomBytes(100);
    const sealed = Buffer.from(await run({ op: 'encrypt', key, iv, aad: Buffer.of(1), data: pt }));
    for (let i = 0; i < 20; i++) {
      // Sequential: one job per batch, so every job reuses the session the failure ran on.
      await assert.rejects(run({ op: 'decrypt', key, iv, aad: Buffer.of(2), data: sealed }), (e: unknown) => {
        assert.ok(e instanceof Pkcs11Error, `wrong-AAD decrypt #${i} gave ${String(e)}`);
        assert.equal(e.fn, 'C_Decrypt');
        return true;
      });
      const back = await run({ op: 'decrypt', key, iv, aad: Buffer.of(1), data: sealed });
      assert.deepEqual(
        Buffer.from(back),
        pt,
        `good decrypt after failure #${i} (CKR_OPERATION_ACTIVE would mean no *Final)`,
      );
    }
  });

  it('600 concurrent calls mixing encrypt, good and tampered decrypts each get their own result', async () => {
    const pts = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 37) % 2000)));
    const sealed = await Promise.all(pts.map((pt, i) => hsm.encryptGcm(root, pt, Buffer.of(i & 0xff))));
    const calls = pts.flatMap((pt, i) => {
      const aad = Buffer.of(i & 0xff);
      const s = Buffer.from(sealed[i] ?? assert.fail('missing ciphertext'));
      const bad = Buffer.from(s);
      bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1;
      return [
        hsm.decryptGcm(root, s, aad).then((p) => assert.deepEqual(Buffer.from(p), pt, `decrypt #${i}`)),
        rejectsWith(hsm.decryptGcm(root, bad, aad), 'DECRYPTION_FAILED', `tampered decrypt #${i}`),
        hsm
          .encryptGcm(root, pt, aad)
          .then((c) => assert.equal(c.length, pt.length + 28, `encrypt #${i}: iv ‖ ct ‖ tag length`)),
      ];
    });
    await Promise.all(calls);
    assert.equal(hsm.connection.workerRunning, true, 'the GCM calls ran on the worker thread');
  });

  it('40 concurrent 64 KiB round trips (batches split by size) all come back intact', async () => {
    const pts = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
    const sealed = await Promise.all(pts.map((pt) => hsm.encryptGcm(root, pt, Buffer.of(7))));
    const back = await Promise.all(sealed.map((c) => hsm.decryptGcm(root, c, Buffer.of(7))));
    for (const [i, pt] of pts.entries()) assert.deepEqual(Buffer.from(back[i] ?? []), pt, `64 KiB #${i}`);
  });

  it('ECDSA on the worker: 300 signatures mixed with GCM jobs in shared batches all verify in Node', async () => {
    const { ref, spki } = await hsm.generateSigningKey('worker-signer', 'ecdsa-p256');
    const pub = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    const msgs = Array.from({ length: 300 }, (_, i) => randomBytes(1 + i));
    const sigs = msgs.map((m) => hsm.sign(ref, m));
    const gcm = msgs.map((m) => hsm.encryptGcm(root, m, Buffer.alloc(0)));
    for (const [i, m] of msgs.entries()) {
      const { alg, signature } = await (sigs[i] ?? assert.fail('missing signature'));
      assert.equal(alg, 'ecdsa-p256');
      assert.ok(verify('sha256', m, pub, signature), `signature #${i} (DER) does not verify`);
      assert.equal((await gcm[i])?.length, m.length + 28, `GCM job #${i} in the same batches`);
    }
  });

  it('ECDSA failures are typed Pkcs11Errors; a failed C_Sign is closed and the session keeps signing', async () => {
    const { ref, spki } = await hsm.generateSigningKey('worker-signer-2', 'ecdsa-p256');
    const pub = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    const none = new Uint8Array(0);
    const bogus = Buffer.alloc(8, 0x7e);
    const err = await run({ op: 'sign-ecdsa', key: bogus, iv: none, aad: none, data: randomBytes(32) }).then(
      () => assert.fail('sign with a bogus key handle succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof Pkcs11Error, `wanted Pkcs11Error, got ${String(err)}`);
    assert.equal(err.fn, 'C_SignInit');
    // An AES key for CKM_ECDSA: SoftHSM accepts the C_SignInit and fails the C_Sign
    // (CKR_GENERAL_ERROR). The worker then calls C_SignFinal (SoftHSM already ended the operation
    // itself, so this checks the outcome, not that call): the next sign on that same session
    // (sequential calls share it) has to succeed, not fail with CKR_OPERATION_ACTIVE.
    const aesKey = await sessionKey(randomBytes(32));
    for (let i = 0; i < 5; i++) {
      await assert.rejects(
        run({ op: 'sign-ecdsa', key: aesKey, iv: none, aad: none, data: randomBytes(32) }),
        (e: unknown) => {
          assert.ok(
            e instanceof Pkcs11Error && (e.fn === 'C_SignInit' || e.fn === 'C_Sign'),
            `AES key for ECDSA #${i} gave ${String(e)}`,
          );
          return true;
        },
      );
      const m = randomBytes(10);
      const { signature } = await hsm.sign(ref, m);
      assert.ok(
        verify('sha256', m, pub, signature),
        `signature after failure #${i} (CKR_OPERATION_ACTIVE = no *Final)`,
      );
    }
    const m = randomBytes(10);
    const { signature } = await hsm.sign(ref, m);
    assert.ok(verify('sha256', m, pub, signature), 'signature after the failures verifies');
  });

  it('the worker path and the libuv C_*Async path read each other’s ciphertexts', async () => {
    const uv = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
      workerThread: false,
    });
    try {
      const aad = randomBytes(20);
      for (const len of [1, 16, 1024, 65536]) {
        const pt = randomBytes(len);
        const fromWorker = await hsm.encryptGcm(root, pt, aad);
        const fromUv = await uv.encryptGcm(root, pt, aad);
        assert.deepEqual(
          Buffer.from(await uv.decryptGcm(root, fromWorker, aad)),
          pt,
          `libuv reads worker (${len} B)`,
        );
        assert.deepEqual(
          Buffer.from(await hsm.decryptGcm(root, fromUv, aad)),
          pt,
          `worker reads libuv (${len} B)`,
        );
      }
      assert.equal(uv.connection.workerRunning, false, 'gcmPath libuv-async must not start a worker');
    } finally {
      await uv.close();
    }
  });

  it('fault switch with GCM in flight: ok or HSM_UNAVAILABLE only; then the worker re-opens and works', async () => {
    const pt = randomBytes(64);
    const before = await hsm.encryptGcm(root, pt, Buffer.alloc(0));
    const calls = Array.from({ length: 400 }, (_, i) =>
      (i % 2
        ? hsm.decryptGcm(root, before, Buffer.alloc(0))
        : hsm.encryptGcm(root, pt, Buffer.alloc(0))
      ).then(
        () => 'ok',
        (e: unknown) => (e instanceof KbError ? e.code : `non-KbError ${String(e)}`),
      ),
    );
    hsm.setFaultInjection(true);
    const codes = await Promise.all(calls);
    assert.ok(
      codes.includes('HSM_UNAVAILABLE'),
      'the fault went on with 400 GCM calls in flight: some must fail',
    );
    const others = new Set(codes.filter((c) => c !== 'ok' && c !== 'HSM_UNAVAILABLE'));
    assert.deepEqual([...others], [], 'only ok or HSM_UNAVAILABLE while the device is gone');
    await rejectsWith(
      hsm.encryptGcm(root, pt, Buffer.alloc(0)),
      'HSM_UNAVAILABLE',
      'encryptGcm during the fault',
    );
    hsm.setFaultInjection(false);
    await hsm.whenHealthy(10_000);
    assert.deepEqual(
      Buffer.from(await hsm.decryptGcm(root, before, Buffer.alloc(0))),
      pt,
      'decrypt after reconnect',
    );
    const after = await hsm.encryptGcm(root, pt, Buffer.alloc(0));
    assert.deepEqual(
      Buffer.from(await hsm.decryptGcm(root, after, Buffer.alloc(0))),
      pt,
      'round trip after reconnect',
    );
  });

  it('close() with GCM in flight: calls finish or get SHUTTING_DOWN, later ones SHUTTING_DOWN, thread ended', async () => {
    const short = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
    });
    const pt = randomBytes(256);
    await short.encryptGcm(root, pt, Buffer.alloc(0));
    assert.equal(short.connection.workerRunning, true, 'worker started by the first GCM call');
    const calls = Array.from({ length: 200 }, () =>
      short.encryptGcm(root, pt, Buffer.alloc(0)).then(
        () => 'ok',
        (e: unknown) => (e instanceof KbError ? e.code : `non-KbError ${String(e)}`),
      ),
    );
    await short.close();
    const codes = new Set(await Promise.all(calls));
    codes.delete('ok');
    codes.delete('SHUTTING_DOWN');
    assert.deepEqual([...codes], [], 'in-flight GCM calls during close');
    await rejectsWith(short.encryptGcm(root, pt, Buffer.alloc(0)), 'SHUTTING_DOWN', 'encryptGcm after close');
    assert.equal(short.connection.workerRunning, false, 'the worker thread is ended by close()');
    assert.deepEqual(
      Buffer.from(await hsm.decryptGcm(root, await hsm.encryptGcm(root, pt, Buffer.of(9)), Buffer.of(9))),
      pt,
      'the other instance still works',
    );
  });
});
