/**
 * Tamper loops on the Keys RPCs that take secrets' ciphertexts, against the real daemon:
 * OpenBox with a bit flipped in every byte, truncated to every length, extended, with the wrong
 * info / aad / key / version; Decapsulate truncated to every length. Every failure must be the
 * one opaque INVALID_ARGUMENT "decryption failed". (ML-KEM rejects implicitly: a flipped KEM
 * ciphertext of the right length decapsulates to an unrelated secret, FIPS 203 §6.3; checked too.)
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
const te = (s: string): Buffer => Buffer.from(s);
const INFO = te('info');
const AAD = te('aad');

before(async () => {
  d = await startDaemon();
  svc = d.client('service');
  for (const [keyId, algorithm] of [
    ['box-mlkem', 'KEY_ALGORITHM_ML_KEM_768'],
    ['box-xwing', 'KEY_ALGORITHM_X_WING'],
    ['box-other', 'KEY_ALGORITHM_X_WING'],
    ['kem-1024', 'KEY_ALGORITHM_ML_KEM_1024'],
  ])
    await svc.keys.unary('CreateKey', { keyId, algorithm });
});
after(async () => {
  await d.stop();
  removeDataDir(d.dataDir);
});

/** Run `reqs` (32 at a time); each must fail with the one opaque error. Returns how many ran. */
async function allOpaque(rpc: string, reqs: { name: string; req: object }[]): Promise<number> {
  for (let i = 0; i < reqs.length; i += 32) {
    await Promise.all(
      reqs.slice(i, i + 32).map(async ({ name, req }) => {
        try {
          const r = await svc.keys.unary(rpc, req);
          assert.fail(
            `${rpc} ${name}: expected "decryption failed", got success ${JSON.stringify(r).slice(0, 80)}`,
          );
        } catch (err) {
          const e = err as ServiceError;
          if (typeof e.code !== 'number') throw err;
          assert.deepEqual(
            [e.code, e.details],
            [GrpcCode.INVALID_ARGUMENT, 'decryption failed'],
            `${rpc} ${name}: got ${GrpcCode[e.code]} "${e.details}", wanted INVALID_ARGUMENT "decryption failed"`,
          );
        }
      }),
    );
  }
  return reqs.length;
}

for (const keyId of ['box-mlkem', 'box-xwing']) {
  test(`${keyId}: OpenBox tamper loop (flip, truncate, extend, wrong info/aad/key/version) is one opaque error`, async () => {
    const sealed = (
      await svc.keys.unary<R>('SealBox', { keyId, plaintext: te('the secret'), info: INFO, aad: AAD })
    ).sealed as Buffer;
    const ok = await svc.keys.unary<R>('OpenBox', { keyId, sealed, info: INFO, aad: AAD });
    assert.deepEqual(ok.plaintext, te('the secret'), 'the untouched box opens');
    const reqs: { name: string; req: object }[] = [];
    for (let i = 0; i < sealed.length; i++) {
      // One bit per byte everywhere, and all eight bits of the first and last 16 bytes.
      const bits = i < 16 || i >= sealed.length - 16 ? [0, 1, 2, 3, 4, 5, 6, 7] : [i % 8];
      for (const b of bits) {
        const t = Buffer.from(sealed);
        t[i]! ^= 1 << b;
        reqs.push({ name: `flip byte ${i} bit ${b}`, req: { keyId, sealed: t, info: INFO, aad: AAD } });
      }
    }
    for (let n = 0; n < sealed.length; n++)
      reqs.push({
        name: `truncated to ${n}`,
        req: { keyId, sealed: sealed.subarray(0, n), info: INFO, aad: AAD },
      });
    reqs.push({
      name: 'one byte appended',
      req: { keyId, sealed: Buffer.concat([sealed, Buffer.of(0)]), info: INFO, aad: AAD },
    });
    reqs.push({ name: 'wrong info', req: { keyId, sealed, info: te('infO'), aad: AAD } });
    reqs.push({ name: 'wrong aad', req: { keyId, sealed, info: INFO, aad: te('aaD') } });
    reqs.push({ name: 'no aad', req: { keyId, sealed, info: INFO } });
    const n = await allOpaque('OpenBox', reqs);
    assert.ok(n > 2 * sealed.length, `ran ${n} tampered opens`);
    // Another key of the same type, and the right key pinned to a version it was not sealed to.
    if (keyId === 'box-xwing')
      await allOpaque('OpenBox', [
        { name: 'wrong key', req: { keyId: 'box-other', sealed, info: INFO, aad: AAD } },
      ]);
    await svc.keys.unary('RotateKey', { keyId });
    await allOpaque('OpenBox', [
      { name: 'pinned to v2', req: { keyId, version: 2, sealed, info: INFO, aad: AAD } },
    ]);
    const still = await svc.keys.unary<R>('OpenBox', { keyId, sealed, info: INFO, aad: AAD });
    assert.equal(still.keyVersion, 1, 'the v1 box still opens after rotation (any version)');
  });
}

for (const keyId of ['box-mlkem', 'box-xwing', 'kem-1024']) {
  test(`${keyId}: Decapsulate of a ciphertext of any wrong length is the one opaque error; flips decapsulate to another secret`, async () => {
    const enc = await svc.keys.unary<R>('Encapsulate', { keyId });
    const ct = enc.ciphertext as Buffer;
    const reqs: { name: string; req: object }[] = [];
    for (let n = 0; n < ct.length; n++)
      reqs.push({ name: `truncated to ${n}`, req: { keyId, ciphertext: ct.subarray(0, n) } });
    reqs.push({ name: 'one byte appended', req: { keyId, ciphertext: Buffer.concat([ct, Buffer.of(7)]) } });
    await allOpaque('Decapsulate', reqs);
    for (const i of [0, 1, ct.length >> 1, ct.length - 33, ct.length - 1]) {
      const t = Buffer.from(ct);
      t[i]! ^= 0x40;
      const r = await svc.keys.unary<R>('Decapsulate', { keyId, ciphertext: t });
      assert.equal((r.sharedSecret as Buffer).length, 32, `flip at ${i}: a 32-byte secret`);
      assert.notDeepEqual(
        r.sharedSecret,
        enc.sharedSecret,
        `flip at ${i}: implicit rejection gives another secret`,
      );
    }
  });
}
