/**
 * keybroker.v1.Keys against the real daemon (SoftHSM2, SQLite, gRPC + mTLS on 127.0.0.1:0):
 * every key type created, used, rotated, exported and checked offline (Node crypto, @noble,
 * @hpke); version windows; JWKS; cross-tenant refusal; bad input; and the end of a tenant
 * (old signatures still verify with the exported key, its sealed boxes no longer open).
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';
import { offlineEncapsulate, offlineSeal, offlineVerify } from './keys-offline.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
let other: KeybrokerClient;
const te = (s: string): Buffer => Buffer.from(s);

interface Case {
  readonly name: string;
  readonly alg: string;
  readonly purpose: 'sig' | 'kem';
  readonly hsmEcdsa?: boolean;
  readonly context?: boolean;
  readonly box?: boolean;
}
const CASES: readonly Case[] = [
  { name: 'mlkem768', alg: 'KEY_ALGORITHM_ML_KEM_768', purpose: 'kem', box: true },
  { name: 'mlkem1024', alg: 'KEY_ALGORITHM_ML_KEM_1024', purpose: 'kem' },
  { name: 'xwing', alg: 'KEY_ALGORITHM_X_WING', purpose: 'kem', box: true },
  { name: 'mldsa44', alg: 'KEY_ALGORITHM_ML_DSA_44', purpose: 'sig', context: true },
  { name: 'mldsa65', alg: 'KEY_ALGORITHM_ML_DSA_65', purpose: 'sig', context: true },
  { name: 'mldsa87', alg: 'KEY_ALGORITHM_ML_DSA_87', purpose: 'sig', context: true },
  { name: 'composite', alg: 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256', purpose: 'sig', context: true },
  {
    name: 'composite-hsm',
    alg: 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256',
    purpose: 'sig',
    context: true,
    hsmEcdsa: true,
  },
  { name: 'ed25519', alg: 'KEY_ALGORITHM_ED25519', purpose: 'sig' },
  { name: 'ecdsa-hsm', alg: 'KEY_ALGORITHM_ECDSA_P256', purpose: 'sig' },
];

before(async () => {
  d = await startDaemon({ init: { org: 'acme', tenant: 'alpha' } });
  svc = d.client('service');
  await d.client('admin').admin.unary('CreateTenant', { org: 'acme', tenant: 'beta' });
  other = d.client(await d.issueClient('spiffe://acme/beta/app'));
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

async function exported(c: KeybrokerClient, keyId: string, version = 0) {
  const get = (format: string) =>
    c.keys.unary<R>('GetPublicKey', { keyId, version, format }).then((r) => r.publicKey as Buffer);
  return {
    raw: await get('PUBLIC_KEY_FORMAT_RAW'),
    spki: await get('PUBLIC_KEY_FORMAT_SPKI_DER'),
    pem: (await get('PUBLIC_KEY_FORMAT_SPKI_PEM')).toString('utf8'),
    jwk: JSON.parse((await get('PUBLIC_KEY_FORMAT_JWK')).toString('utf8')) as R,
  };
}

/** Signatures made before any rotation or shred, checked again at the end. */
const kept: { c: Case; raw: Buffer; spki: Buffer; msg: Buffer; sig: Buffer; ctx: Buffer }[] = [];

describe('every key type: create, use, rotate, export, offline checks', () => {
  for (const c of CASES) {
    test(`${c.name}: ${c.purpose === 'sig' ? 'sign/verify' : 'encapsulate/decapsulate'}, rotate, old version still works`, async () => {
      const created = await svc.keys.unary<R>('CreateKey', {
        keyId: c.name,
        algorithm: c.alg,
        hsmEcdsa: c.hsmEcdsa ?? false,
      });
      const key = created.key as R;
      assert.equal(key.algorithm, c.alg, `${c.name}: CreateKey algorithm`);
      assert.equal(key.primaryVersion, 1, `${c.name}: CreateKey primary`);
      assert.equal(key.inHsm, c.hsmEcdsa === true || c.name === 'ecdsa-hsm', `${c.name}: inHsm`);
      const v1 = await exported(svc, c.name);
      assert.ok(v1.pem.startsWith('-----BEGIN PUBLIC KEY-----'), `${c.name}: PEM`);
      const pemBody = Buffer.from(v1.pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
      assert.deepEqual(pemBody, v1.spki, `${c.name}: PEM and DER carry the same SPKI`);
      if (c.name !== 'xwing' && !c.name.startsWith('composite')) {
        const parsed = createPublicKey(v1.pem).export({ format: 'der', type: 'spki' });
        assert.deepEqual(parsed, v1.spki, `${c.name}: Node parses the SPKI`);
      }
      assert.equal(v1.jwk.kid, `${c.name}.1`, `${c.name}: JWK kid`);
      if (c.purpose === 'sig') {
        const msg = randomBytes(200);
        const ctx = c.context ? te('ctx-1') : Buffer.alloc(0);
        const s1 = await svc.keys.unary<R>('Sign', { keyId: c.name, message: msg, context: ctx });
        assert.equal(s1.keyVersion, 1);
        const sig = s1.signature as Buffer;
        const off = offlineVerify(c.alg, v1.raw, v1.spki, msg, sig, ctx);
        assert.equal(off.node, true, `${c.name}: Node crypto verifies the daemon's signature`);
        if (off.noble !== undefined) assert.equal(off.noble, true, `${c.name}: @noble verifies it`);
        const bad = Buffer.from(sig);
        bad[bad.length >> 1]! ^= 1;
        assert.equal(
          offlineVerify(c.alg, v1.raw, v1.spki, msg, bad, ctx).node,
          false,
          `${c.name}: flipped sig offline`,
        );
        kept.push({ c, raw: v1.raw, spki: v1.spki, msg, sig, ctx });
        const rot = await svc.keys.unary<R>('RotateKey', { keyId: c.name });
        assert.equal((rot.key as R).primaryVersion, 2, `${c.name}: RotateKey`);
        const s2 = await svc.keys.unary<R>('Sign', { keyId: c.name, message: msg, context: ctx });
        assert.equal(s2.keyVersion, 2, `${c.name}: the new primary signs`);
        const v2 = await exported(svc, c.name);
        assert.notDeepEqual(v2.raw, v1.raw, `${c.name}: rotation made a new key pair`);
        assert.equal(offlineVerify(c.alg, v2.raw, v2.spki, msg, s2.signature as Buffer, ctx).node, true);
        const old = await svc.keys.unary<R>('Verify', {
          keyId: c.name,
          message: msg,
          signature: sig,
          context: ctx,
        });
        assert.deepEqual(
          [old.valid, old.keyVersion],
          [true, 1],
          `${c.name}: v1 signature still verifies (any version)`,
        );
        const wrongCtx = await svc.keys.unary<R>('Verify', {
          keyId: c.name,
          message: msg,
          signature: sig,
          context: c.context ? te('ctx-2') : Buffer.alloc(0),
        });
        if (c.context) assert.equal(wrongCtx.valid, false, `${c.name}: another context does not verify`);
        const pinned = await svc.keys.unary<R>('Verify', {
          keyId: c.name,
          version: 2,
          message: msg,
          signature: sig,
          context: ctx,
        });
        assert.equal(pinned.valid, false, `${c.name}: v1 signature under v2 only`);
      } else {
        const enc = await svc.keys.unary<R>('Encapsulate', { keyId: c.name });
        const dec = await svc.keys.unary<R>('Decapsulate', { keyId: c.name, ciphertext: enc.ciphertext });
        assert.deepEqual(dec.sharedSecret, enc.sharedSecret, `${c.name}: Decapsulate(Encapsulate)`);
        const theirs = offlineEncapsulate(c.alg, v1.raw);
        const dec2 = await svc.keys.unary<R>('Decapsulate', {
          keyId: c.name,
          ciphertext: Buffer.from(theirs.cipherText),
        });
        assert.deepEqual(
          new Uint8Array(dec2.sharedSecret as Buffer),
          theirs.sharedSecret,
          `${c.name}: @noble encapsulation decapsulates`,
        );
        let box: Buffer | undefined;
        if (c.box) {
          box = await offlineSeal(c.alg, v1.raw, te('to v1'), te('info'), te('aad'));
          const opened = await svc.keys.unary<R>('OpenBox', {
            keyId: c.name,
            sealed: box,
            info: te('info'),
            aad: te('aad'),
          });
          assert.deepEqual(
            opened.plaintext,
            te('to v1'),
            `${c.name}: @hpke-sealed box opens through the daemon`,
          );
          const mine = await svc.keys.unary<R>('SealBox', {
            keyId: c.name,
            plaintext: te('daemon'),
            info: Buffer.alloc(0),
            aad: Buffer.alloc(0),
          });
          const back = await svc.keys.unary<R>('OpenBox', { keyId: c.name, sealed: mine.sealed });
          assert.deepEqual(back.plaintext, te('daemon'));
        }
        await svc.keys.unary('RotateKey', { keyId: c.name });
        const old = await svc.keys.unary<R>('Decapsulate', {
          keyId: c.name,
          version: 1,
          ciphertext: Buffer.from(theirs.cipherText),
        });
        assert.deepEqual(
          new Uint8Array(old.sharedSecret as Buffer),
          theirs.sharedSecret,
          `${c.name}: v1 still decapsulates`,
        );
        const primary = await svc.keys.unary<R>('Encapsulate', { keyId: c.name });
        assert.equal(primary.keyVersion, 2, `${c.name}: encapsulation goes to the new primary`);
        if (box !== undefined) {
          const opened = await svc.keys.unary<R>('OpenBox', {
            keyId: c.name,
            sealed: box,
            info: te('info'),
            aad: te('aad'),
          });
          assert.deepEqual(
            [opened.plaintext, opened.keyVersion],
            [te('to v1'), 1],
            `${c.name}: old box opens after rotation`,
          );
        }
      }
    });
  }
});

describe('versions, listing, JWKS', () => {
  test('a disabled version is refused; the primary cannot be disabled; re-enable works', async () => {
    const msg = te('m');
    const s1 = kept.find((k) => k.c.name === 'mldsa65');
    assert.ok(s1, 'needs the mldsa65 case');
    await svc.keys.unary('SetAsymmetricKeyVersionEnabled', { keyId: 'mldsa65', version: 1, enabled: false });
    await expectCode(
      svc.keys.unary('Verify', {
        keyId: 'mldsa65',
        version: 1,
        message: s1.msg,
        signature: s1.sig,
        context: s1.ctx,
      }),
      GrpcCode.FAILED_PRECONDITION,
      'Verify with a disabled version',
    );
    const any = await svc.keys.unary<R>('Verify', {
      keyId: 'mldsa65',
      message: s1.msg,
      signature: s1.sig,
      context: s1.ctx,
    });
    assert.equal(any.valid, false, 'a disabled version does not verify as "any version"');
    await expectCode(
      svc.keys.unary('SetAsymmetricKeyVersionEnabled', { keyId: 'mldsa65', version: 2, enabled: false }),
      GrpcCode.FAILED_PRECONDITION,
      'disabling the primary',
    );
    await svc.keys.unary('SetAsymmetricKeyVersionEnabled', { keyId: 'mldsa65', version: 1, enabled: true });
    const again = await svc.keys.unary<R>('Verify', {
      keyId: 'mldsa65',
      message: s1.msg,
      signature: s1.sig,
      context: s1.ctx,
    });
    assert.equal(again.valid, true);
    void msg;
  });

  test('ListKeys and DescribeKey show every key with its versions; JWKS has signature keys only', async () => {
    const list = (await svc.keys.unary<R>('ListKeys', {})).keys as R[];
    assert.deepEqual(list.map((k) => k.keyId).sort(), CASES.map((c) => c.name).sort());
    const desc = (await svc.keys.unary<R>('DescribeKey', { keyId: 'ed25519' })).key as R;
    assert.deepEqual(
      (desc.versions as R[]).map((v) => [v.version, v.state]),
      [
        [1, 'KEY_VERSION_STATE_ENABLED'],
        [2, 'KEY_VERSION_STATE_ENABLED'],
      ],
    );
    const jwks = JSON.parse((await svc.keys.unary<R>('GetJwks', {})).jwksJson as string) as { keys: R[] };
    const kids = jwks.keys.map((k) => k.kid as string).sort();
    const sigKeys = CASES.filter((c) => c.purpose === 'sig').flatMap((c) => [`${c.name}.1`, `${c.name}.2`]);
    assert.deepEqual(kids, sigKeys.sort(), 'JWKS: every enabled version of every signature key');
    // A JWKS key verifies offline with Node (JWK import) for the classical algorithms.
    const ed = kept.find((k) => k.c.name === 'ed25519');
    const edJwk = jwks.keys.find((k) => k.kid === 'ed25519.1');
    assert.ok(ed && edJwk);
    const { kid: _kid, use: _use, ...jwk } = edJwk;
    assert.equal(
      nodeVerify(null, ed.msg, createPublicKey({ key: jwk as never, format: 'jwk' }), ed.sig),
      true,
    );
  });

  test('SignBatch / VerifyBatch: per-item results, one tampered item fails alone', async () => {
    const messages = Array.from({ length: 20 }, (_, i) => te(`item ${i}`));
    for (const keyId of ['mldsa65', 'composite', 'ed25519', 'ecdsa-hsm']) {
      const s = await svc.keys.unary<R>('SignBatch', { keyId, messages, context: Buffer.alloc(0) });
      const sigs = (s.results as R[]).map((r) => r.signature as Buffer);
      assert.equal(sigs.filter(Boolean).length, 20, `${keyId}: SignBatch signed every item`);
      const items = messages.map((m, i) => ({ message: m, signature: sigs[i] }));
      items[3] = { message: te('other'), signature: sigs[3] };
      const v = (await svc.keys.unary<R>('VerifyBatch', { keyId, items })).results as R[];
      assert.deepEqual(
        v.map((r) => r.valid),
        messages.map((_, i) => i !== 3),
        `${keyId}: VerifyBatch per item`,
      );
    }
  });
});

describe('isolation and bad input', () => {
  test("another tenant cannot see or use this tenant's keys; an admin identity may not call Keys", async () => {
    assert.deepEqual((await other.keys.unary<R>('ListKeys', {})).keys, [], 'beta sees no keys');
    for (const [rpc, req] of [
      ['DescribeKey', { keyId: 'mldsa65' }],
      ['Sign', { keyId: 'mldsa65', message: te('x') }],
      ['GetPublicKey', { keyId: 'mldsa65' }],
      ['Decapsulate', { keyId: 'mlkem768', ciphertext: randomBytes(1088) }],
      ['OpenBox', { keyId: 'xwing', sealed: randomBytes(1200) }],
    ] as const) {
      await expectCode(other.keys.unary(rpc, req), GrpcCode.NOT_FOUND, `beta ${rpc} on alpha's key name`);
    }
    // Same key name in beta: alpha's box does not open with beta's key (the one opaque error).
    await other.keys.unary('CreateKey', { keyId: 'xwing', algorithm: 'KEY_ALGORITHM_X_WING' });
    const { raw } = await exported(svc, 'xwing');
    const box = await offlineSeal(
      'KEY_ALGORITHM_X_WING',
      raw,
      te('alpha only'),
      Buffer.alloc(0),
      Buffer.alloc(0),
    );
    const e = await expectCode(
      other.keys.unary('OpenBox', { keyId: 'xwing', sealed: box }),
      GrpcCode.INVALID_ARGUMENT,
      'beta opens alpha box',
    );
    assert.equal(e.details, 'decryption failed');
    await expectCode(
      d.client('admin').keys.unary('ListKeys', {}),
      GrpcCode.PERMISSION_DENIED,
      'admin identity',
    );
  });

  test('bad fields are INVALID_ARGUMENT and never echo the input', async () => {
    const secretish = 'zz-SECRET-VALUE-zz';
    const cases: [string, string, object][] = [
      ['bad key_id', 'CreateKey', { keyId: secretish, algorithm: 'KEY_ALGORITHM_ED25519' }],
      ['unspecified algorithm', 'CreateKey', { keyId: 'k1', algorithm: 'KEY_ALGORITHM_UNSPECIFIED' }],
      [
        'hsm_ecdsa on ML-DSA',
        'CreateKey',
        { keyId: 'k2', algorithm: 'KEY_ALGORITHM_ML_DSA_65', hsmEcdsa: true },
      ],
      ['context too long', 'Sign', { keyId: 'mldsa65', message: te('m'), context: Buffer.alloc(256) }],
      ['context on Ed25519', 'Sign', { keyId: 'ed25519', message: te('m'), context: te(secretish) }],
      ['sign with a KEM key', 'Sign', { keyId: 'mlkem768', message: te('m') }],
      ['encapsulate to a signature key', 'Encapsulate', { keyId: 'mldsa65' }],
      ['seal to ML-KEM-1024', 'SealBox', { keyId: 'mlkem1024', plaintext: te('m') }],
      ['message over 1 MiB', 'Sign', { keyId: 'ed25519', message: Buffer.alloc(1024 * 1024 + 1) }],
      ['HSM message over 64 KiB', 'Sign', { keyId: 'ecdsa-hsm', message: Buffer.alloc(64 * 1024 + 1) }],
      [
        'signature over 8 KiB',
        'Verify',
        { keyId: 'ed25519', message: te('m'), signature: Buffer.alloc(8193) },
      ],
      [
        'ciphertext over the 2 KiB field bound',
        'Decapsulate',
        { keyId: 'mlkem768', ciphertext: Buffer.alloc(2049) },
      ],
      ['info over 1 KiB', 'SealBox', { keyId: 'xwing', plaintext: te('m'), info: Buffer.alloc(1025) }],
      ['empty batch', 'SignBatch', { keyId: 'ed25519', messages: [] }],
      [
        'batch over 1024 items',
        'SignBatch',
        { keyId: 'ed25519', messages: Array.from({ length: 1025 }, () => te('m')) },
      ],
      ['unknown format', 'GetPublicKey', { keyId: 'ed25519', format: 99 }],
    ];
    for (const [name, rpc, req] of cases) {
      const e = await expectCode(svc.keys.unary(rpc, req), GrpcCode.INVALID_ARGUMENT, name);
      assert.ok(!String(e.details).includes(secretish), `${name}: message echoes the input: ${e.details}`);
    }
    await expectCode(
      svc.keys.unary('CreateKey', { keyId: 'ed25519', algorithm: 'KEY_ALGORITHM_ED25519' }),
      GrpcCode.ALREADY_EXISTS,
      'CreateKey on an existing key id',
    );
    await expectCode(svc.keys.unary('DescribeKey', { keyId: 'nope' }), GrpcCode.NOT_FOUND, 'unknown key');
    await expectCode(
      svc.keys.unary('GetPublicKey', { keyId: 'ed25519', version: 9 }),
      GrpcCode.NOT_FOUND,
      'unknown version',
    );
  });
});

describe('the end of a tenant', () => {
  test('after DestroyTenant old signatures still verify offline; its keys and boxes are gone', async () => {
    assert.ok(kept.length >= 7, 'signatures kept from the first phase');
    await d.client('admin').admin.unary('DestroyTenant', { org: 'acme', tenant: 'alpha' });
    for (const k of kept) {
      const off = offlineVerify(k.c.alg, k.raw, k.spki, k.msg, k.sig, k.ctx);
      assert.equal(
        off.node,
        true,
        `${k.c.name}: signature made before the shred verifies with the exported key`,
      );
    }
    const shredded = d.client('service');
    await expectCode(
      shredded.keys.unary('ListKeys', {}),
      GrpcCode.NOT_FOUND,
      'ListKeys of a destroyed tenant',
    );
    await expectCode(
      shredded.keys.unary('OpenBox', { keyId: 'xwing', sealed: randomBytes(1200) }),
      GrpcCode.NOT_FOUND,
      'OpenBox of a destroyed tenant',
    );
    // The other tenant is untouched.
    const enc = await other.keys.unary<R>('Encapsulate', { keyId: 'xwing' });
    const dec = await other.keys.unary<R>('Decapsulate', { keyId: 'xwing', ciphertext: enc.ciphertext });
    assert.deepEqual(dec.sharedSecret, enc.sharedSecret);
  });
});
