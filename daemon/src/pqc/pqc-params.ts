/**
 * Parameter sets of the post-quantum algorithms keybroker offers, with their byte lengths
 * (noble style: one `lengths` object per algorithm) and object identifiers.
 * Lengths are FIPS 203 Table 3 (ML-KEM) and FIPS 204 Table 2 (ML-DSA).
 */

export const KEM_ALGORITHMS = ['ml-kem-512', 'ml-kem-768', 'ml-kem-1024'] as const;
export type KemAlgorithm = (typeof KEM_ALGORITHMS)[number];

export const SIG_ALGORITHMS = ['ml-dsa-44', 'ml-dsa-65', 'ml-dsa-87'] as const;
export type SigAlgorithm = (typeof SIG_ALGORITHMS)[number];

export type PqcAlgorithm = KemAlgorithm | SigAlgorithm;

export interface KemLengths {
  /** d ‖ z, the FIPS 203 key-generation seed (the storage form of a private key). */
  readonly seed: 64;
  readonly publicKey: number;
  /** The expanded decapsulation key dk (FIPS 203 §7.1). */
  readonly secretKey: number;
  readonly cipherText: number;
  readonly sharedSecret: 32;
}

export interface SigLengths {
  /** ξ, the FIPS 204 key-generation seed (the storage form of a private key). */
  readonly seed: 32;
  readonly publicKey: number;
  /** The expanded signing key sk (FIPS 204 §7.2). */
  readonly secretKey: number;
  readonly signature: number;
  /** Longest context string FIPS 204 allows. */
  readonly maxContext: 255;
}

export const KEM_LENGTHS: Readonly<Record<KemAlgorithm, KemLengths>> = {
  'ml-kem-512': { seed: 64, publicKey: 800, secretKey: 1632, cipherText: 768, sharedSecret: 32 },
  'ml-kem-768': { seed: 64, publicKey: 1184, secretKey: 2400, cipherText: 1088, sharedSecret: 32 },
  'ml-kem-1024': { seed: 64, publicKey: 1568, secretKey: 3168, cipherText: 1568, sharedSecret: 32 },
};

export const SIG_LENGTHS: Readonly<Record<SigAlgorithm, SigLengths>> = {
  'ml-dsa-44': { seed: 32, publicKey: 1312, secretKey: 2560, signature: 2420, maxContext: 255 },
  'ml-dsa-65': { seed: 32, publicKey: 1952, secretKey: 4032, signature: 3309, maxContext: 255 },
  'ml-dsa-87': { seed: 32, publicKey: 2592, secretKey: 4896, signature: 4627, maxContext: 255 },
};

/** NIST CSOR object identifiers (FIPS 203/204 algorithm registrations), dotted form. */
export const PQC_OIDS: Readonly<Record<PqcAlgorithm, string>> = {
  'ml-kem-512': '2.16.840.1.101.3.4.4.1',
  'ml-kem-768': '2.16.840.1.101.3.4.4.2',
  'ml-kem-1024': '2.16.840.1.101.3.4.4.3',
  'ml-dsa-44': '2.16.840.1.101.3.4.3.17',
  'ml-dsa-65': '2.16.840.1.101.3.4.3.18',
  'ml-dsa-87': '2.16.840.1.101.3.4.3.19',
};

/** JOSE/COSE `alg` names for AKP keys (RFC 9964 for ML-DSA; ML-KEM as Node exports it). */
export const JOSE_ALG: Readonly<Record<PqcAlgorithm, string>> = {
  'ml-kem-512': 'ML-KEM-512',
  'ml-kem-768': 'ML-KEM-768',
  'ml-kem-1024': 'ML-KEM-1024',
  'ml-dsa-44': 'ML-DSA-44',
  'ml-dsa-65': 'ML-DSA-65',
  'ml-dsa-87': 'ML-DSA-87',
};

export function isKemAlgorithm(alg: string): alg is KemAlgorithm {
  return (KEM_ALGORITHMS as readonly string[]).includes(alg);
}

export function isSigAlgorithm(alg: string): alg is SigAlgorithm {
  return (SIG_ALGORITHMS as readonly string[]).includes(alg);
}
