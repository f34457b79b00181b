/** Test support: how each self-test KAT entry is derived, shared by the generator and its check. */
import { createHash } from 'node:crypto';

const h = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Deterministic filler seeds: SHAKE256("keybroker self-test " + label). */
export function fixedSeed(label: string, length: number): Uint8Array {
  return new Uint8Array(
    createHash('shake256', { outputLength: length }).update(`keybroker self-test ${label}`).digest(),
  );
}

interface NobleKem {
  keygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(pk: Uint8Array, m: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(ct: Uint8Array, sk: Uint8Array): Uint8Array;
}
interface NobleSig {
  keygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  sign(msg: Uint8Array, sk: Uint8Array, opts?: { extraEntropy?: false }): Uint8Array;
}

export interface MlKemKatEntry {
  alg: string;
  source: string;
  seed: string;
  dk: string;
  c: string;
  K: string;
  cBad: string;
  KBad: string;
}

/** ML-KEM KAT: dk from seed, (c, K), and the implicit-rejection secret for c with bit 0 flipped. */
export function mlKemKat(
  alg: string,
  noble: NobleKem,
  seed: Uint8Array,
  m: Uint8Array | undefined,
  source: string,
  c?: Uint8Array,
): MlKemKatEntry {
  const kp = noble.keygen(seed);
  const ct = c ?? noble.encapsulate(kp.publicKey, m ?? new Uint8Array(32)).cipherText;
  const bad = Uint8Array.from(ct);
  bad[0]! ^= 1;
  return {
    alg,
    source,
    seed: h(seed),
    dk: h(kp.secretKey),
    c: h(ct),
    K: h(noble.decapsulate(ct, kp.secretKey)),
    cBad: h(bad),
    KBad: h(noble.decapsulate(bad, kp.secretKey)),
  };
}

export interface MlDsaKatEntry {
  alg: string;
  source: string;
  seed: string;
  pk: string;
  sk: string;
  msg: string;
  sig: string;
}

/** ML-DSA KAT: keys from seed and a deterministic (or vector) signature over msg, empty context. */
export function mlDsaKat(
  alg: string,
  noble: NobleSig,
  seed: Uint8Array,
  msg: Uint8Array,
  source: string,
  sig?: Uint8Array,
): MlDsaKatEntry {
  const kp = noble.keygen(seed);
  return {
    alg,
    source,
    seed: h(seed),
    pk: h(kp.publicKey),
    sk: h(kp.secretKey),
    msg: h(msg),
    sig: h(sig ?? noble.sign(msg, kp.secretKey, { extraEntropy: false })),
  };
}
