/**
 * HPKE sealed boxes (RFC 9180 base mode; ML-KEM-768 and X-Wing KEMs; HKDF-SHA256; AES-256-GCM):
 * round trip with keys made by our engines (the seeds keybroker stores), tamper loop (every bit
 * of the AEAD part, sampled bits of enc, every truncation, wrong AAD, wrong info), wrong
 * recipient — each failure the one opaque DECRYPTION_FAILED. The HPKE-PQ draft's ML-KEM-768
 * vector (kept in hpke-pq-vector.json, as ../shared/vectors has none) opens with the library and
 * its keys/shared secret match both engines; @hpke's X-Wing derives the shared X-Wing vectors' keys.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Aes128Gcm, Aes256Gcm, CipherSuite, HkdfSha256 } from '@hpke/core';
import { XWing as HpkeXWing } from '@hpke/hybridkem-x-wing';
import { MlKem768 } from '@hpke/ml-kem';
import { KbError } from '../../daemon/src/errors.ts';
import { EngineHpkeKem } from '../../daemon/src/pqc/hpke-engine-kem.ts';
import { NodeAes256Gcm } from '../../daemon/src/pqc/hpke-node-aead.ts';
import { NodeHkdfSha256 } from '../../daemon/src/pqc/hpke-node-kdf.ts';
import {
  openBox,
  sealBox,
  SealedBoxes,
  SEALED_BOX_LENGTHS,
  type SealedBoxKem,
} from '../../daemon/src/pqc/hpke-sealed-box.ts';
import { XWing } from '../../daemon/src/pqc/xwing.ts';
import { ENGINES, openssl } from './engines.ts';
import { eq, hex, readVectorJson, wycheproof } from './vectors.ts';

const te = (s: string): Uint8Array => new TextEncoder().encode(s);
const xwing = new XWing(openssl);

/** A recipient key pair in keybroker's storage form (seed) with the public key from our engines. */
function recipient(kem: SealedBoxKem): { seed: Uint8Array; publicKey: Uint8Array } {
  if (kem === 'x-wing') {
    const kp = xwing.generateKeyPair();
    return { seed: Uint8Array.from(kp.seed.expose()), publicKey: kp.publicKey };
  }
  const kp = openssl.generateKeyPair('ml-kem-768');
  return { seed: Uint8Array.from(kp.seed!.expose()), publicKey: kp.publicKey };
}

async function failsOpaque(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(
    p,
    (e: unknown) =>
      e instanceof KbError && e.code === 'DECRYPTION_FAILED' && e.message === 'decryption failed',
    what,
  );
}

describe('HPKE sealed boxes', () => {
  for (const kem of ['ml-kem-768', 'x-wing'] as const) {
    const len = SEALED_BOX_LENGTHS[kem];

    it(`${kem}: round trip with keys from our engines; layout enc ‖ ct`, async () => {
      const r = recipient(kem);
      for (const size of [0, 1, 1000]) {
        const pt = crypto.getRandomValues(new Uint8Array(size));
        const box = await sealBox(kem, r.publicKey, pt, te('info'), te('aad'));
        assert.equal(box.length, len.enc + size + len.tag);
        assert.ok(eq(await openBox(kem, r.seed, box, te('info'), te('aad')), pt), `size ${size}`);
      }
    });

    it(`${kem}: tamper loop, wrong AAD/info and wrong recipient all fail with the one opaque error`, async () => {
      const r = recipient(kem);
      const pt = te('secret payload');
      const box = await sealBox(kem, r.publicKey, pt, te('info'), te('aad'));
      const open = (b: Uint8Array, info = te('info'), aad = te('aad'), seed = r.seed) =>
        openBox(kem, seed, b, info, aad);
      for (let bit = 0; bit < box.length * 8; bit++) {
        // Every bit of the AEAD part; every 97th bit of enc (each costs a decapsulation).
        if (bit < len.enc * 8 && bit % 97 !== 0) continue;
        const bad = Uint8Array.from(box);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        await failsOpaque(open(bad), `flipped bit ${bit}`);
      }
      for (let n = 0; n < box.length; n += n < len.enc ? 61 : 1)
        await failsOpaque(open(box.subarray(0, n)), `truncated to ${n}`);
      await failsOpaque(open(Uint8Array.from(Buffer.concat([box, Uint8Array.of(0)]))), 'one byte appended');
      await failsOpaque(open(box, te('info'), te('aaD')), 'wrong AAD');
      await failsOpaque(open(box, te('inf0')), 'wrong info');
      await failsOpaque(open(box, te('info'), te('aad'), recipient(kem).seed), 'wrong recipient');
      assert.ok(eq(await open(box), pt), 'the untouched box still opens');
    });

    it(`${kem}: bad inputs are INVALID_ARGUMENT naming the parameter`, async () => {
      const isInvalid = (param: string) => (e: unknown) =>
        e instanceof KbError && e.code === 'INVALID_ARGUMENT' && e.message.includes(param);
      await assert.rejects(
        sealBox(kem, new Uint8Array(len.publicKey - 1), te('x')),
        isInvalid('recipientPublicKey'),
      );
      await assert.rejects(
        openBox(kem, new Uint8Array(len.privateKey + 1), new Uint8Array(2000)),
        isInvalid('recipientPrivateKey'),
      );
      await assert.rejects(
        sealBox(kem, recipient(kem).publicKey, te('x'), new Uint8Array(2000)),
        isInvalid('info'),
      );
    });
  }

  const theirKem = (kem: SealedBoxKem) => (kem === 'x-wing' ? new HpkeXWing() : new MlKem768());
  for (const kem of ['ml-kem-768', 'x-wing'] as const) {
    it(`${kem}: wire-compatible with @hpke's own KEM package in both directions`, async () => {
      const r = recipient(kem);
      const theirs = new CipherSuite({ kem: theirKem(kem), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
      const len = SEALED_BOX_LENGTHS[kem];
      const ab = (b: Uint8Array): ArrayBuffer => Uint8Array.from(b).buffer;
      // Ours seals, theirs opens.
      const box = await sealBox(kem, r.publicKey, te('ours'), te('i'), te('a'));
      const rk = await theirs.kem.importKey('raw', ab(r.seed), false);
      const rc = await theirs.createRecipientContext({
        recipientKey: rk,
        enc: ab(box.subarray(0, len.enc)),
        info: ab(te('i')),
      });
      assert.ok(eq(new Uint8Array(await rc.open(ab(box.subarray(len.enc)), ab(te('a')))), te('ours')));
      // Theirs seals, ours opens.
      const pk = await theirs.kem.importKey('raw', ab(r.publicKey), true);
      const sc = await theirs.createSenderContext({ recipientPublicKey: pk, info: ab(te('i')) });
      const ct = new Uint8Array(await sc.seal(ab(te('theirs')), ab(te('a'))));
      const theirBox = Uint8Array.from(Buffer.concat([new Uint8Array(sc.enc), ct]));
      assert.ok(eq(await openBox(kem, r.seed, theirBox, te('i'), te('a')), te('theirs')));
    });
  }

  it('refuses an engine that cannot expand seeds', () => {
    assert.throws(
      () => new SealedBoxes(ENGINES[1]!),
      (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION',
    );
  });

  it('an ML-KEM-768 box does not open as X-Wing', async () => {
    const m = recipient('ml-kem-768');
    const box = await sealBox('ml-kem-768', m.publicKey, te('x'));
    await failsOpaque(openBox('x-wing', m.seed.subarray(0, 32), box), 'ML-KEM box opened as X-Wing');
  });
});

describe('HPKE known answers', () => {
  interface HpkeVector {
    info: string;
    ikmR: string;
    pkRm: string;
    enc: string;
    shared_secret: string;
    pt: string;
    aad: string;
    ct: string;
  }
  const v = JSON.parse(readFileSync(new URL('./hpke-pq-vector.json', import.meta.url), 'utf8')) as HpkeVector;

  it('draft-ietf-hpke-pq ML-KEM-768/HKDF-SHA256/AES-128-GCM vector opens with @hpke (KEM + key schedule)', async () => {
    const suite = new CipherSuite({ kem: new MlKem768(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
    const ab = (s: string): ArrayBuffer => hex(s).buffer as ArrayBuffer;
    const sk = await suite.kem.importKey('raw', ab(v.ikmR), false);
    const r = await suite.createRecipientContext({ recipientKey: sk, enc: ab(v.enc), info: ab(v.info) });
    assert.ok(eq(new Uint8Array(await r.open(ab(v.ct), ab(v.aad))), hex(v.pt)));
  });

  it('the same vector opens through our engine-backed KEM (openssl) and node:crypto HKDF', async () => {
    const suite = new CipherSuite({
      kem: new EngineHpkeKem('ml-kem-768', openssl),
      kdf: new NodeHkdfSha256(),
      aead: new Aes128Gcm(),
    });
    const ab = (s: string): ArrayBuffer => hex(s).buffer as ArrayBuffer;
    const sk = await suite.kem.importKey('raw', ab(v.ikmR), false);
    const r = await suite.createRecipientContext({ recipientKey: sk, enc: ab(v.enc), info: ab(v.info) });
    assert.ok(eq(new Uint8Array(await r.open(ab(v.ct), ab(v.aad))), hex(v.pt)));
  });

  for (const engine of ENGINES) {
    it(`the vector's key pair and shared secret match ${engine.name} (seed = ikmR)`, () => {
      const kp = openssl.generateKeyPair('ml-kem-768', hex(v.ikmR));
      assert.ok(eq(kp.publicKey, hex(v.pkRm)), 'pkRm');
      const key = engine.loadPrivateKey('ml-kem-768', 'expanded', kp.secretKey.expose(), kp.publicKey);
      assert.ok(eq(engine.decapsulate(key, hex(v.enc)), hex(v.shared_secret)), 'shared_secret');
    });
  }

  it('@hpke X-Wing agrees with the shared X-Wing vectors: boxes sealed to each pk open with its seed', async () => {
    const kem = new HpkeXWing();
    for (const x of readVectorJson<{ seed: string; pk: string }[]>('xwing/test-vectors.json')) {
      const pk = await kem.importKey('raw', hex(x.pk).buffer as ArrayBuffer, true);
      assert.ok(eq(new Uint8Array(await kem.serializePublicKey(pk)), hex(x.pk)));
      assert.ok(eq(xwing.generateKeyPair(hex(x.seed)).publicKey, hex(x.pk)), 'our X-Wing keygen');
      const box = await sealBox('x-wing', hex(x.pk), te('to the vector key'));
      assert.ok(eq(await openBox('x-wing', hex(x.seed), box), te('to the vector key')));
    }
  });
});

describe('NodeHkdfSha256 (HKDF for the HPKE key schedule)', () => {
  it('matches @hpke HkdfSha256 on labeled extract/expand and passes Wycheproof HKDF-SHA256 (extract then expand)', async () => {
    const ours = new NodeHkdfSha256();
    const theirs = new HkdfSha256();
    const suiteId = Uint8Array.of(0x48, 0x50, 0x4b, 0x45, 0, 0x41, 0, 1, 0, 2);
    ours.init(suiteId);
    theirs.init(suiteId);
    for (const len of [0, 1, 32, 33, 64, 100]) {
      const ikm = crypto.getRandomValues(new Uint8Array(len));
      const label = te('secret');
      const a = new Uint8Array(await ours.labeledExtract(new Uint8Array(0), label, ikm));
      assert.ok(
        eq(a, new Uint8Array(await theirs.labeledExtract(new Uint8Array(0), label, ikm))),
        `extract ${len}`,
      );
      const outLen = Math.max(1, len);
      const b = new Uint8Array(await ours.labeledExpand(a, te('key'), ikm, outLen));
      assert.ok(
        eq(b, new Uint8Array(await theirs.labeledExpand(a, te('key'), ikm, outLen))),
        `expand ${len}`,
      );
    }
    let n = 0;
    for (const g of wycheproof('hkdf_sha256_test').testGroups) {
      for (const t of g.tests) {
        const salt = hex(t['salt']);
        if (t.result !== 'valid' || (salt.length !== 0 && salt.length !== 32)) continue;
        const prk = await ours.extract(salt, hex(t['ikm']));
        const okm = new Uint8Array(await ours.expand(prk, hex(t['info']), t['size'] as number));
        assert.ok(eq(okm, hex(t['okm'])), `tcId ${t.tcId}`);
        n++;
      }
    }
    assert.ok(n > 10, `ran ${n} vectors`);
  });
});

describe('NodeAes256Gcm (AEAD for sealed boxes)', () => {
  it('interoperates with @hpke Aes256Gcm both ways and rejects a flipped tag', async () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ours = new NodeAes256Gcm().createEncryptionContext(key);
    const theirs = new Aes256Gcm().createEncryptionContext(key);
    for (const size of [0, 1, 16, 1000]) {
      const pt = crypto.getRandomValues(new Uint8Array(size));
      const aad = te(`aad ${size}`);
      const a = new Uint8Array(await ours.seal(iv, pt, aad));
      assert.ok(eq(new Uint8Array(await theirs.open(iv, a, aad)), pt), `theirs opens ours (${size})`);
      const b = new Uint8Array(await theirs.seal(iv, pt, aad));
      assert.ok(eq(a, b), 'same ciphertext');
      const bad = Uint8Array.from(b);
      bad[bad.length - 1]! ^= 1;
      await assert.rejects(ours.open(iv, bad, aad));
      await assert.rejects(ours.open(iv, b.subarray(0, 15), aad));
    }
  });
});
