/**
 * Sealed boxes: HPKE (RFC 9180) base mode, single-shot, with a post-quantum KEM, HKDF-SHA256 and
 * AES-256-GCM, built on the @hpke/* packages (key schedule, AEAD and KEMs):
 *   - 'ml-kem-768': KEM id 0x0041, ML-KEM-768 for HPKE (draft-ietf-hpke-pq / @hpke/ml-kem),
 *     recipient private key = the 64-byte ML-KEM seed d ‖ z;
 *   - 'x-wing':     KEM id 0x647a, X-Wing (@hpke/hybridkem-x-wing), private key = 32-byte seed.
 * Private keys are the same seeds keybroker stores for its ML-KEM-768 and X-Wing keys.
 *
 * Sealed box layout (what `seal` returns and `open` takes):  enc (1088 | 1120 bytes) ‖ AEAD ct.
 * Any failure to open — wrong key, tampered byte, wrong info or AAD, truncation — is the one
 * opaque DECRYPTION_FAILED error.
 */
import { Aes256Gcm, CipherSuite, HkdfSha256 } from '@hpke/core';
import { XWing } from '@hpke/hybridkem-x-wing';
import { MlKem768 } from '@hpke/ml-kem';
import { KbError, decryptionFailed } from '../errors.ts';
import { assertBytes, assertOneOf, MAX_MESSAGE_BYTES } from './pqc-assert.ts';

export const SEALED_BOX_KEMS = ['ml-kem-768', 'x-wing'] as const;
export type SealedBoxKem = (typeof SEALED_BOX_KEMS)[number];

export const SEALED_BOX_LENGTHS: Readonly<
  Record<SealedBoxKem, { kemId: number; enc: number; publicKey: number; privateKey: number; tag: 16 }>
> = {
  'ml-kem-768': { kemId: 0x0041, enc: 1088, publicKey: 1184, privateKey: 64, tag: 16 },
  'x-wing': { kemId: 0x647a, enc: 1120, publicKey: 1216, privateKey: 32, tag: 16 },
};

/** `info` and `aad` are bound but not secret; both bounded so a caller cannot make us hash megabytes. */
const MAX_INFO = 1024;
const MAX_AAD = 64 * 1024;

const suites = new Map<SealedBoxKem, CipherSuite>();
function suiteFor(kem: SealedBoxKem): CipherSuite {
  let s = suites.get(kem);
  if (s === undefined) {
    s = new CipherSuite({
      kem: kem === 'x-wing' ? new XWing() : new MlKem768(),
      kdf: new HkdfSha256(),
      aead: new Aes256Gcm(),
    });
    suites.set(kem, s);
  }
  return s;
}

function ab(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/** Encrypt `plaintext` to `recipientPublicKey`; anyone holding the public key can seal. */
export async function sealBox(
  kem: SealedBoxKem,
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  info: Uint8Array = new Uint8Array(0),
  aad: Uint8Array = new Uint8Array(0),
): Promise<Uint8Array> {
  assertOneOf('kem', kem, SEALED_BOX_KEMS);
  const len = SEALED_BOX_LENGTHS[kem];
  assertBytes('recipientPublicKey', recipientPublicKey, len.publicKey);
  assertBytes('plaintext', plaintext, { max: MAX_MESSAGE_BYTES });
  assertBytes('info', info, { max: MAX_INFO });
  assertBytes('aad', aad, { max: MAX_AAD });
  const suite = suiteFor(kem);
  let pk: Awaited<ReturnType<CipherSuite['kem']['importKey']>>;
  try {
    pk = await suite.kem.importKey('raw', ab(recipientPublicKey), true);
  } catch (cause) {
    throw new KbError('INVALID_ARGUMENT', 'recipientPublicKey is not a valid key', { cause });
  }
  const sender = await suite.createSenderContext({ recipientPublicKey: pk, info: ab(info) });
  const ct = new Uint8Array(await sender.seal(ab(plaintext), ab(aad)));
  const enc = new Uint8Array(sender.enc);
  const out = new Uint8Array(enc.length + ct.length);
  out.set(enc, 0);
  out.set(ct, enc.length);
  return out;
}

/** Open a sealed box with the recipient's seed. Every failure is DECRYPTION_FAILED. */
export async function openBox(
  kem: SealedBoxKem,
  recipientPrivateKey: Uint8Array,
  sealed: Uint8Array,
  info: Uint8Array = new Uint8Array(0),
  aad: Uint8Array = new Uint8Array(0),
): Promise<Uint8Array> {
  assertOneOf('kem', kem, SEALED_BOX_KEMS);
  const len = SEALED_BOX_LENGTHS[kem];
  assertBytes('recipientPrivateKey', recipientPrivateKey, len.privateKey);
  assertBytes('sealed', sealed, { max: MAX_MESSAGE_BYTES + len.enc + len.tag });
  assertBytes('info', info, { max: MAX_INFO });
  assertBytes('aad', aad, { max: MAX_AAD });
  if (sealed.length < len.enc + len.tag) throw decryptionFailed();
  const suite = suiteFor(kem);
  const skBuf = ab(recipientPrivateKey);
  try {
    const sk = await suite.kem.importKey('raw', skBuf, false);
    const recipient = await suite.createRecipientContext({
      recipientKey: sk,
      enc: ab(sealed.subarray(0, len.enc)),
      info: ab(info),
    });
    return new Uint8Array(await recipient.open(ab(sealed.subarray(len.enc)), ab(aad)));
  } catch (cause) {
    throw decryptionFailed(cause);
  } finally {
    new Uint8Array(skBuf).fill(0);
  }
}
