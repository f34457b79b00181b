/**
 * Offline oracles for the Keys e2e tests: verify signatures and seal / encapsulate with only an
 * exported public key, using Node's crypto, @noble/post-quantum and @hpke/* — never the broker's
 * own code paths. The composite M' is rebuilt here from the draft's text.
 */
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { Aes256Gcm, CipherSuite, HkdfSha256 } from '@hpke/core';
import { XWing as HpkeXWing } from '@hpke/hybridkem-x-wing';
import { MlKem768 } from '@hpke/ml-kem';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024, ml_kem768 } from '@noble/post-quantum/ml-kem.js';

const te = (s: string): Uint8Array => new TextEncoder().encode(s);
const ab = (b: Uint8Array): ArrayBuffer => Uint8Array.from(b).buffer;

/** draft-ietf-lamps-pq-composite-sigs-19 M' for id-MLDSA65-ECDSA-P256-SHA512. */
export function compositeMPrime(message: Uint8Array, ctx: Uint8Array): Uint8Array {
  return Buffer.concat([
    te('CompositeAlgorithmSignatures2025'),
    te('COMPSIG-MLDSA65-ECDSA-P256-SHA512'),
    Uint8Array.of(ctx.length),
    ctx,
    createHash('sha512').update(message).digest(),
  ]);
}

/**
 * Verify `sig` over `msg` with the exported key: `raw` public key bytes and `spki` DER.
 * ML-DSA: @noble and Node; composite: each half on its own (noble ML-DSA with ctx = Label, Node
 * ECDSA); Ed25519 and ECDSA: Node.
 */
export function offlineVerify(
  type: string,
  raw: Uint8Array,
  spki: Uint8Array,
  msg: Uint8Array,
  sig: Uint8Array,
  ctx: Uint8Array,
): { noble?: boolean; node: boolean } {
  // Node parses the SPKI of the FIPS and classical algorithms (not composite or X-Wing OIDs).
  const spkiKey = () => createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  switch (type) {
    case 'KEY_ALGORITHM_ML_DSA_44':
    case 'KEY_ALGORITHM_ML_DSA_65':
    case 'KEY_ALGORITHM_ML_DSA_87': {
      const dsa =
        type === 'KEY_ALGORITHM_ML_DSA_44'
          ? ml_dsa44
          : type === 'KEY_ALGORITHM_ML_DSA_65'
            ? ml_dsa65
            : ml_dsa87;
      return {
        noble: dsa.verify(sig, msg, raw, { context: ctx }),
        node: nodeVerify(null, msg, { key: spkiKey(), context: ctx } as never, sig),
      };
    }
    case 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256': {
      const mPrime = compositeMPrime(msg, ctx);
      const mlPk = raw.subarray(0, 1952);
      const ml = ml_dsa65.verify(sig.subarray(0, 3309), mPrime, mlPk, {
        context: te('COMPSIG-MLDSA65-ECDSA-P256-SHA512'),
      });
      const ec = createPublicKey({
        key: Buffer.from(raw.subarray(1952)),
        format: 'raw-public',
        asymmetricKeyType: 'ec',
        namedCurve: 'prime256v1',
      } as never);
      const ecOk = nodeVerify('sha256', mPrime, ec, sig.subarray(3309));
      return { noble: ml, node: ecOk && ml };
    }
    case 'KEY_ALGORITHM_ED25519':
      return { node: nodeVerify(null, msg, spkiKey(), sig) };
    case 'KEY_ALGORITHM_ECDSA_P256':
      return { node: nodeVerify('sha256', msg, spkiKey(), sig) };
  }
  throw new Error(`no offline verifier for ${type}`);
}

/** Encapsulate offline with @noble (ML-KEM-768/1024, X-Wing). */
export function offlineEncapsulate(
  type: string,
  raw: Uint8Array,
): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  const kem =
    type === 'KEY_ALGORITHM_ML_KEM_768'
      ? ml_kem768
      : type === 'KEY_ALGORITHM_ML_KEM_1024'
        ? ml_kem1024
        : ml_kem768_x25519;
  return kem.encapsulate(raw);
}

/** Seal a box offline with @hpke's own KEM packages (HPKE base mode, HKDF-SHA256, AES-256-GCM). */
export async function offlineSeal(
  type: string,
  raw: Uint8Array,
  plaintext: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
): Promise<Buffer> {
  const kem = type === 'KEY_ALGORITHM_X_WING' ? new HpkeXWing() : new MlKem768();
  const suite = new CipherSuite({ kem, kdf: new HkdfSha256(), aead: new Aes256Gcm() });
  const pk = await suite.kem.importKey('raw', ab(raw), true);
  const sc = await suite.createSenderContext({ recipientPublicKey: pk, info: ab(info) });
  const ct = new Uint8Array(await sc.seal(ab(plaintext), ab(aad)));
  return Buffer.concat([new Uint8Array(sc.enc), ct]);
}
