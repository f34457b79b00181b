/**
 * The HSM integration suite, run against every tested profile (softhsm2.test.ts,
 * opencryptoki.test.ts). Each test first checks the profile declares what it needs; a test that
 * cannot run on a token is skipped with the reason printed, never silently.
 */
import assert from 'node:assert/strict';
import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import type { ErrorCode } from '../../daemon/src/errors.ts';
import type { HsmKeyRef, HsmSigningAlgorithm } from '../../daemon/src/hsm/hsm.ts';
import { inspectRootKey } from '../../daemon/src/hsm/key-inspection.ts';
import { KeyHandles } from '../../daemon/src/hsm/key-handles.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import type { Pkcs11HsmOptions } from '../../daemon/src/hsm/pkcs11-hsm.ts';

export interface SuiteTarget {
  /** Options for Pkcs11Hsm.open (profile, pin, token label) once the token exists. */
  open(): Promise<Pkcs11HsmOptions>;
  cleanup(): void;
}

/** Await `p` and assert it rejects with KbError `code`; `what` names the call for the message. */
export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KbError, `${what}: wanted KbError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: wanted ${code}, got ${err.code} (${err.detail ?? err.message})`);
    return;
  }
  assert.fail(`${what}: resolved, wanted KbError ${code}`);
}

function verifySignature(
  alg: HsmSigningAlgorithm,
  spki: Uint8Array,
  msg: Uint8Array,
  sig: Uint8Array,
): boolean {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  if (alg === 'ecdsa-p256') return verify('sha256', msg, key, sig);
  return verify('sha256', msg, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
}

const ALL_SIGNING: readonly HsmSigningAlgorithm[] = ['ecdsa-p256', 'rsa-pss-sha256-3072'];

/** Define the suite for one target. */
export function hsmSuite(name: string, target: SuiteTarget): void {
  describe(`Hsm on ${name}`, () => {
    let hsm: Pkcs11Hsm;
    let opts: Pkcs11HsmOptions;
    let root: HsmKeyRef;
    const gcm = (t: TestContext): boolean => {
      if (hsm.capabilities.aesGcm) return true;
      t.skip(`profile ${hsm.profileName} declares aesGcm: false (no CKM_AES_GCM in this token)`);
      return false;
    };

    before(async () => {
      opts = await target.open();
      hsm = await Pkcs11Hsm.open(opts);
      // Made for in-HSM GCM too (the GCM tests below); OEKs are wrap-only (test/hsm/root-key-attributes.test.ts).
      root = await hsm.generateRootKey('suite-root', { gcm: true });
    });
    after(async () => {
      await hsm?.close();
      target.cleanup();
    });

    it('reports the capabilities of its profile and is healthy', () => {
      assert.equal(hsm.capabilities.wrap, opts.profile.wrap);
      assert.equal(hsm.capabilities.aesGcm, opts.profile.aesGcm);
      assert.deepEqual(hsm.capabilities.signing, opts.profile.signing);
      const h = hsm.health();
      assert.equal(h.ok, true, `health() = ${JSON.stringify(h)}`);
      assert.equal(h.sessionsTotal, opts.profile.pool.size);
    });

    it('root key is sensitive, never extractable, and its CKA_VALUE cannot be read', async () => {
      const a = await inspectRootKey(hsm, root.label);
      assert.deepEqual(
        { ...a },
        {
          token: true,
          sensitive: true,
          extractable: false,
          alwaysSensitive: true,
          neverExtractable: true,
          valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
        },
        `inspectRootKey(${root.label}) = ${JSON.stringify(a)}`,
      );
      if (hsm.capabilities.wrap === 'aes-cbc-pad-hmac-sha256') {
        const m = await inspectRootKey(hsm, root.label, true);
        assert.equal(m.extractable, false, 'HMAC companion must be non-extractable');
        assert.equal(
          m.valueRead,
          'CKR_ATTRIBUTE_SENSITIVE',
          `HMAC companion CKA_VALUE read gave ${m.valueRead}`,
        );
      }
    });

    it('finds keys by label and refuses a second key with the same label', async () => {
      assert.deepEqual(await hsm.findKey(root.label, 'root'), root);
      assert.equal(await hsm.findKey('suite-absent', 'root'), undefined);
      await rejectsWith(hsm.generateRootKey(root.label), 'ALREADY_EXISTS', 'generateRootKey(existing label)');
    });

    for (const [label, bad] of [
      ['empty', ''],
      ['space', 'a b'],
      ['too long', 'x'.repeat(129)],
      ['non-ASCII', 'clé'],
    ] as const) {
      it(`rejects a ${label} label`, async () => {
        await rejectsWith(hsm.generateRootKey(bad), 'INVALID_ARGUMENT', `generateRootKey(${label})`);
      });
    }

    for (const size of [16, 24, 32, 48, 64]) {
      it(`wraps and unwraps a ${size}-byte key`, async () => {
        const key = randomBytes(size);
        const wrapped = await hsm.wrapKey(root, key);
        assert.ok(!Buffer.from(wrapped).includes(key.subarray(0, 8)), 'wrapped blob contains key bytes');
        const again = await hsm.wrapKey(root, key);
        if (hsm.capabilities.wrap === 'aes-cbc-pad-hmac-sha256') {
          assert.notDeepEqual(again, wrapped, 'CBC wraps must use a fresh IV');
        }
        assert.deepEqual(
          Buffer.from(await hsm.unwrapKey(root, wrapped)),
          key,
          `unwrapKey(wrapKey(${size} B))`,
        );
        assert.deepEqual(Buffer.from(await hsm.unwrapKey(root, again)), key);
      });
    }

    for (const size of [0, 15, 65, 1000]) {
      it(`refuses to wrap ${size} bytes`, async () => {
        await rejectsWith(hsm.wrapKey(root, new Uint8Array(size)), 'INVALID_ARGUMENT', `wrapKey(${size} B)`);
      });
    }

    it('root keys found cold (a new handle cache) pass the attribute check made at first use', async () => {
      const oek = await hsm.generateRootKey('suite-oek');
      const cold = new KeyHandles(hsm.connection, opts.profile);
      await hsm.connection.withSession(async (s) => {
        for (const label of [root.label, oek.label]) {
          const h = cold.root(s, label);
          assert.ok(h, `${label} found`);
          assert.equal(
            h.hmac !== undefined,
            opts.profile.wrap === 'aes-cbc-pad-hmac-sha256',
            `${label}: companion`,
          );
        }
      });
      const key = randomBytes(32);
      assert.deepEqual(Buffer.from(await hsm.unwrapKey(oek, await hsm.wrapKey(oek, key))), key);
      await hsm.destroyKey(oek);
    });

    it('rejects every bit flip, truncation and extension of a wrapped key, and a wrong root key', async () => {
      const key = randomBytes(32);
      const wrapped = Buffer.from(await hsm.wrapKey(root, key));
      for (let bit = 0; bit < wrapped.length * 8; bit++) {
        const bad = Buffer.from(wrapped);
        bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        await rejectsWith(hsm.unwrapKey(root, bad), 'DECRYPTION_FAILED', `unwrapKey(bit ${bit} flipped)`);
      }
      for (let len = 0; len < wrapped.length; len++) {
        const cut = wrapped.subarray(0, len);
        await rejectsWith(hsm.unwrapKey(root, cut), 'DECRYPTION_FAILED', `unwrapKey(truncated to ${len})`);
      }
      for (const extra of [Buffer.of(0), randomBytes(8), randomBytes(16)]) {
        const longer = Buffer.concat([wrapped, extra]);
        await rejectsWith(hsm.unwrapKey(root, longer), 'DECRYPTION_FAILED', `unwrapKey(+${extra.length} B)`);
      }
      const other = await hsm.generateRootKey('suite-other-root');
      await rejectsWith(hsm.unwrapKey(other, wrapped), 'DECRYPTION_FAILED', 'unwrapKey(wrong root key)');
      await hsm.destroyKey(other);
      assert.deepEqual(Buffer.from(await hsm.unwrapKey(root, wrapped)), key, 'original still unwraps');
    });

    it('AES-GCM is refused with UNIMPLEMENTED when the profile has no GCM', async (t) => {
      if (hsm.capabilities.aesGcm) {
        t.skip(`profile ${hsm.profileName} declares aesGcm: true; covered by the GCM tests`);
        return;
      }
      await rejectsWith(hsm.encryptGcm(root, randomBytes(8), randomBytes(4)), 'UNIMPLEMENTED', 'encryptGcm');
      await rejectsWith(hsm.decryptGcm(root, randomBytes(40), randomBytes(4)), 'UNIMPLEMENTED', 'decryptGcm');
    });

    it('AES-GCM refuses an empty plaintext', async (t) => {
      if (!gcm(t)) return;
      await rejectsWith(
        hsm.encryptGcm(root, new Uint8Array(0), randomBytes(4)),
        'INVALID_ARGUMENT',
        'encryptGcm(0 B)',
      );
    });

    for (const size of [1, 1024, 65536]) {
      it(`AES-GCM round trip of ${size} bytes with a fresh IV`, async (t) => {
        if (!gcm(t)) return;
        const pt = randomBytes(size);
        const aad = randomBytes(20);
        const a = await hsm.encryptGcm(root, pt, aad);
        const b = await hsm.encryptGcm(root, pt, aad);
        assert.equal(a.length, 12 + size + 16, 'iv ‖ ciphertext ‖ tag');
        assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12), 'two encryptions reused an IV');
        assert.deepEqual(Buffer.from(await hsm.decryptGcm(root, a, aad)), pt);
      });
    }

    it('AES-GCM IVs are unique over 2,000 encryptions', async (t) => {
      if (!gcm(t)) return;
      const ivs = new Set<string>();
      const sealed = await Promise.all(
        Array.from({ length: 2000 }, () => hsm.encryptGcm(root, randomBytes(4), Buffer.alloc(0))),
      );
      for (const s of sealed) ivs.add(Buffer.from(s.subarray(0, 12)).toString('hex'));
      assert.equal(ivs.size, 2000);
    });

    it('AES-GCM rejects every bit flip, truncation, wrong AAD and wrong key', async (t) => {
      if (!gcm(t)) return;
      const pt = randomBytes(24);
      const aad = Buffer.from('tenant=a;key=1');
      const sealed = Buffer.from(await hsm.encryptGcm(root, pt, aad));
      for (let bit = 0; bit < sealed.length * 8; bit++) {
        const bad = Buffer.from(sealed);
        bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        await rejectsWith(
          hsm.decryptGcm(root, bad, aad),
          'DECRYPTION_FAILED',
          `decryptGcm(bit ${bit} flipped)`,
        );
      }
      for (let len = 0; len < sealed.length; len++) {
        await rejectsWith(
          hsm.decryptGcm(root, sealed.subarray(0, len), aad),
          'DECRYPTION_FAILED',
          `truncated to ${len}`,
        );
      }
      for (const [what, other] of [
        ['empty AAD', Buffer.alloc(0)],
        ['other tenant AAD', Buffer.from('tenant=b;key=1')],
        ['AAD one byte short', aad.subarray(1)],
      ] as const) {
        await rejectsWith(hsm.decryptGcm(root, sealed, other), 'DECRYPTION_FAILED', `decryptGcm(${what})`);
      }
      const otherRoot = await hsm.generateRootKey('suite-gcm-other', { gcm: true });
      await rejectsWith(
        hsm.decryptGcm(otherRoot, sealed, aad),
        'DECRYPTION_FAILED',
        'decryptGcm(wrong root key)',
      );
      await hsm.destroyKey(otherRoot);
      assert.deepEqual(Buffer.from(await hsm.decryptGcm(root, sealed, aad)), pt);
    });

    for (const alg of ALL_SIGNING) {
      it(`${alg}: signature in the HSM verifies with Node crypto (or is refused if not declared)`, async (t) => {
        const label = `suite-sign-${alg}`;
        if (!hsm.capabilities.signing.includes(alg)) {
          await rejectsWith(
            hsm.generateSigningKey(label, alg),
            'ALGORITHM_NOT_ALLOWED',
            `generateSigningKey(${alg})`,
          );
          t.diagnostic(`profile ${hsm.profileName} does not declare ${alg}: checked that it is refused`);
          return;
        }
        const { ref, spki } = await hsm.generateSigningKey(label, alg);
        assert.deepEqual(
          Buffer.from(await hsm.publicKey(ref)),
          Buffer.from(spki),
          'publicKey() = spki from generate',
        );
        const msg = randomBytes(100);
        const { alg: used, signature } = await hsm.sign(ref, msg);
        assert.equal(used, alg);
        assert.ok(
          verifySignature(alg, spki, msg, signature),
          `crypto.verify(${alg}) of an HSM signature failed`,
        );
        const other = Buffer.from(msg);
        other[0] = (other[0] ?? 0) ^ 1;
        assert.equal(
          verifySignature(alg, spki, other, signature),
          false,
          'signature verified for another message',
        );
        await rejectsWith(
          hsm.generateSigningKey(label, alg),
          'ALREADY_EXISTS',
          'generateSigningKey(existing)',
        );
        await hsm.destroyKey(ref);
        assert.equal(await hsm.findKey(label, 'signing'), undefined);
      });
    }

    it('destroyKey removes the key (find returns undefined, use gives NOT_FOUND) and is idempotent', async () => {
      const doomed = await hsm.generateRootKey('suite-doomed');
      const wrapped = await hsm.wrapKey(doomed, randomBytes(32));
      await hsm.destroyKey(doomed);
      assert.equal(await hsm.findKey('suite-doomed', 'root'), undefined, 'findKey after destroyKey');
      await rejectsWith(hsm.unwrapKey(doomed, wrapped), 'NOT_FOUND', 'unwrapKey(destroyed root)');
      await hsm.destroyKey(doomed);
      const again = await hsm.generateRootKey('suite-doomed');
      await rejectsWith(
        hsm.unwrapKey(again, wrapped),
        'DECRYPTION_FAILED',
        'unwrapKey(new key under old label)',
      );
      await hsm.destroyKey(again);
    });

    it('generateRandom returns the asked length and checks its bounds', async () => {
      for (const n of [1, 12, 32, 4096]) assert.equal((await hsm.generateRandom(n)).length, n);
      assert.notDeepEqual(await hsm.generateRandom(32), await hsm.generateRandom(32));
      for (const n of [0, -1, 1.5, 65537]) {
        await rejectsWith(hsm.generateRandom(n), 'INVALID_ARGUMENT', `generateRandom(${n})`);
      }
    });

    it('runs 2,000 concurrent mixed async operations through the pool without a crash', async () => {
      const alg = hsm.capabilities.signing[0];
      const signer = alg ? (await hsm.generateSigningKey('suite-load-signer', alg)).ref : undefined;
      const key = randomBytes(32);
      const wrapped = await hsm.wrapKey(root, key);
      const ops: Promise<void>[] = [];
      for (let i = 0; i < 2000; i++) {
        const kind = i % 5;
        if (kind === 0) ops.push(hsm.wrapKey(root, key).then(() => undefined));
        else if (kind === 1) {
          ops.push(
            hsm.unwrapKey(root, wrapped).then((k) => assert.deepEqual(Buffer.from(k), key, `unwrap #${i}`)),
          );
        } else if (kind === 2 && hsm.capabilities.aesGcm) {
          const pt = randomBytes(64);
          ops.push(
            hsm
              .encryptGcm(root, pt, Buffer.of(i & 0xff))
              .then((c) => hsm.decryptGcm(root, c, Buffer.of(i & 0xff)))
              .then((p) => assert.deepEqual(Buffer.from(p), pt, `gcm #${i}`)),
          );
        } else if (kind === 3 && signer)
          ops.push(hsm.sign(signer, Buffer.of(i & 0xff)).then(() => undefined));
        else ops.push(hsm.generateRandom(16).then((r) => assert.equal(r.length, 16)));
      }
      const results = await Promise.allSettled(ops);
      const failed = results.filter((r) => r.status === 'rejected');
      assert.equal(
        failed.length,
        0,
        `failures: ${failed
          .slice(0, 3)
          .map((f) => String(f.reason))
          .join('; ')}`,
      );
      assert.equal(hsm.health().ok, true);
      assert.equal(hsm.health().sessionsInUse, 0, 'every session returned to the pool');
      if (signer) await hsm.destroyKey(signer);
    });

    it('recovers after the fault switch by re-initialising the module and logging in again', async () => {
      const key = randomBytes(32);
      const wrapped = await hsm.wrapKey(root, key);
      hsm.setFaultInjection(true);
      await rejectsWith(hsm.unwrapKey(root, wrapped), 'HSM_UNAVAILABLE', 'unwrapKey during the fault');
      assert.equal(hsm.health().ok, false);
      hsm.setFaultInjection(false);
      await hsm.whenHealthy(15_000);
      assert.deepEqual(
        Buffer.from(await hsm.unwrapKey(root, wrapped)),
        key,
        'unwrap after C_Finalize/C_Initialize',
      );
      assert.deepEqual(await hsm.findKey(root.label, 'root'), root);
    });

    it('a full queue fails fast with POOL_EXHAUSTED (second instance sharing the module)', async () => {
      const small = await Pkcs11Hsm.open({ ...opts, poolSize: 1, maxWaiters: 2 });
      try {
        const key = randomBytes(32);
        const results = await Promise.allSettled(Array.from({ length: 20 }, () => small.wrapKey(root, key)));
        const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as KbError).code));
        assert.ok(codes.includes('ok'), `codes ${codes.join(',')}`);
        assert.ok(codes.includes('POOL_EXHAUSTED'), `codes ${codes.join(',')}`);
        assert.deepEqual(new Set(codes), new Set(['ok', 'POOL_EXHAUSTED']));
      } finally {
        await small.close();
      }
      assert.equal(hsm.health().ok, true, 'closing the second instance left the first working');
      assert.equal((await hsm.generateRandom(8)).length, 8);
    });
  });
}
