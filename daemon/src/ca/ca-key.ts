/**
 * The signing key of an org CA generation, in one of two forms:
 *   ecdsa-p256: a non-extractable key pair generated in the HSM; certificates are hashed in
 *               software and signed by the token (CKM_ECDSA).
 *   mldsa65:    no HSM signs ML-DSA, so a 32-byte seed is generated in software and kept only
 *               wrapped (AES-KWP) by a per-org non-extractable HSM key; unwrapped into a
 *               non-extractable WebCrypto key while the daemon runs.
 * Either way the result is what @peculiar/x509 signs with: a key plus the crypto to use.
 */
import { KeyObject, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { KbError } from '../errors.ts';
import type { Hsm, HsmKeyRef } from '../hsm/hsm.ts';

export type CaAlgorithm = 'ecdsa-p256' | 'mldsa65';
export const CA_ALGORITHMS: readonly CaAlgorithm[] = ['ecdsa-p256', 'mldsa65'];

/** What the certificate and CRL generators sign with. */
export interface CaKey {
  readonly algorithm: CaAlgorithm;
  /** SubjectPublicKeyInfo DER of the CA key. */
  readonly spki: Uint8Array;
  readonly signingKey: webcrypto.CryptoKey;
  readonly signingAlgorithm: { name: string; hash?: string };
  readonly crypto: webcrypto.Crypto;
}

/** Where a new key went: the HSM label, and for ML-DSA the wrapped seed. */
export interface CreatedCaKey {
  readonly key: CaKey;
  readonly hsmLabel: string;
  readonly wrappedSeed: Uint8Array | undefined;
}

const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const MLDSA = { name: 'ML-DSA-65' } as const;

/** DER ECDSA-Sig-Value -> the r‖s form WebCrypto (and so @peculiar/x509) uses, P-256 only. */
function ecdsaDerToRaw(der: Uint8Array): Uint8Array {
  const out = new Uint8Array(64);
  let i = 2;
  if (der[0] !== 0x30 || (der[1] ?? 0) >= 0x80) throw new Error('not a P-256 DER ECDSA signature');
  for (const at of [0, 32]) {
    if (der[i] !== 0x02) throw new Error('not a DER INTEGER');
    const len = der[i + 1] ?? 0;
    let v = der.subarray(i + 2, i + 2 + len);
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    if (v.length > 32) throw new Error('ECDSA integer too long for P-256');
    out.set(v, at + 32 - v.length);
    i += 2 + len;
  }
  return out;
}

/** A WebCrypto facade whose sign() is the HSM's; everything else is Node's. */
function hsmCrypto(hsm: Hsm, ref: HsmKeyRef): webcrypto.Crypto {
  const subtle = Object.create(webcrypto.subtle) as webcrypto.SubtleCrypto;
  subtle.sign = async (_alg: unknown, _key: unknown, data: unknown) => {
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(
            (data as ArrayBufferView).buffer,
            (data as ArrayBufferView).byteOffset,
            (data as ArrayBufferView).byteLength,
          );
    const { signature } = await hsm.sign(ref, bytes);
    return ecdsaDerToRaw(signature).buffer as ArrayBuffer;
  };
  return {
    subtle,
    getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
    randomUUID: webcrypto.randomUUID.bind(webcrypto),
  } as webcrypto.Crypto;
}

/** The key object @peculiar/x509 passes through to sign(): only its algorithm is read. */
function hsmKeyHandle(): webcrypto.CryptoKey {
  return {
    type: 'private',
    extractable: false,
    algorithm: { name: 'ECDSA', namedCurve: 'P-256' },
    usages: ['sign'],
  } as unknown as webcrypto.CryptoKey;
}

const labelOf = (org: string, generation: number, alg: CaAlgorithm) =>
  alg === 'ecdsa-p256' ? `kb-ca-${org}-g${generation}` : `kb-ca-kek-${org}`;

async function mldsaKey(seed: Uint8Array): Promise<CaKey> {
  const signingKey = await webcrypto.subtle.importKey('raw-seed', seed, MLDSA, false, ['sign']);
  // KeyObject.from() wants an extractable key; this copy only yields the public key and is dropped.
  const scratch = await webcrypto.subtle.importKey('raw-seed', seed, MLDSA, true, ['sign']);
  const spki = createPublicKey(KeyObject.from(scratch)).export({ type: 'spki', format: 'der' });
  return {
    algorithm: 'mldsa65',
    spki,
    signingKey,
    signingAlgorithm: MLDSA,
    crypto: webcrypto as webcrypto.Crypto,
  };
}

/** Make the key of a new CA generation. */
export async function createCaKey(
  hsm: Hsm,
  org: string,
  generation: number,
  alg: CaAlgorithm,
): Promise<CreatedCaKey> {
  const label = labelOf(org, generation, alg);
  if (alg === 'ecdsa-p256') {
    if (!hsm.capabilities.signing.includes('ecdsa-p256'))
      throw new KbError('FAILED_PRECONDITION', 'the HSM profile cannot make ECDSA P-256 keys');
    const { ref, spki } = await hsm.generateSigningKey(label, 'ecdsa-p256');
    return { key: ecdsaKey(hsm, ref, spki), hsmLabel: label, wrappedSeed: undefined };
  }
  const kek = (await hsm.findKey(label, 'root')) ?? (await hsm.generateRootKey(label));
  const seed = randomBytes(32);
  try {
    const wrappedSeed = await hsm.wrapKey(kek, seed);
    return { key: await mldsaKey(seed), hsmLabel: label, wrappedSeed };
  } finally {
    seed.fill(0);
  }
}

function ecdsaKey(hsm: Hsm, ref: HsmKeyRef, spki: Uint8Array): CaKey {
  return {
    algorithm: 'ecdsa-p256',
    spki,
    signingKey: hsmKeyHandle(),
    signingAlgorithm: EC_SIGN,
    crypto: hsmCrypto(hsm, ref),
  };
}

/** Open the key of an existing CA generation (HSM lookup, or unwrap of the ML-DSA seed). */
export async function openCaKey(
  hsm: Hsm,
  row: {
    readonly algorithm: CaAlgorithm;
    readonly hsmLabel: string;
    readonly wrappedSeed: Uint8Array | undefined;
  },
): Promise<CaKey> {
  if (row.algorithm === 'ecdsa-p256') {
    const ref = await hsm.findKey(row.hsmLabel, 'signing');
    if (ref === undefined)
      throw new KbError('FAILED_PRECONDITION', `CA key ${row.hsmLabel} is not in the HSM`);
    return ecdsaKey(hsm, ref, await hsm.publicKey(ref));
  }
  const kek = await hsm.findKey(row.hsmLabel, 'root');
  if (kek === undefined || row.wrappedSeed === undefined)
    throw new KbError('FAILED_PRECONDITION', `CA key-encryption key ${row.hsmLabel} is not in the HSM`);
  const seed = await hsm.unwrapKey(kek, row.wrappedSeed);
  try {
    return await mldsaKey(seed);
  } finally {
    seed.fill(0);
  }
}
