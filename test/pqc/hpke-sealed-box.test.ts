/**
 * HPKE sealed boxes (RFC 9180 base mode; ML-KEM-768 and X-Wing KEMs; HKDF-SHA256; AES-256-GCM):
 * round trip with keys made by our engines (the seeds keybroker stores), tamper loop (every bit
 * of the AEAD part, sampled bits of enc, every truncation, wrong AAD, wrong info), wrong
 * recipient — each failure the one opaque DECRYPTION_FAILED.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import {
  openBox,
  sealBox,
  SEALED_BOX_LENGTHS,
  type SealedBoxKem,
} from '../../daemon/src/pqc/hpke-sealed-box.ts';
import { XWing } from '../../daemon/src/pqc/xwing.ts';
import { openssl } from './engines.ts';
import { eq } from './vectors.ts';

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

  it('an ML-KEM-768 box does not open as X-Wing', async () => {
    const m = recipient('ml-kem-768');
    const box = await sealBox('ml-kem-768', m.publicKey, te('x'));
    await failsOpaque(openBox('x-wing', m.seed.subarray(0, 32), box), 'ML-KEM box opened as X-Wing');
  });
});
