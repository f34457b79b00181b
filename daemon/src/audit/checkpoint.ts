/**
 * Signed checkpoints. A checkpoint entry signs the chain position just before it; the signer is
 * anything that can sign bytes (the daemon passes an HSM-held ECDSA P-256 or RSA-PSS key, later
 * ML-DSA). Verification uses only the public key, offline.
 */
import { constants, createHash, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** Signs checkpoint statements. `alg` is recorded in each checkpoint; verifiers take it from the pinned key. */
export interface CheckpointSigner {
  /** "ecdsa-p256" | "rsa-pss-sha256-3072" | "ml-dsa-44" | "ml-dsa-65" | "ml-dsa-87". */
  readonly alg: string;
  readonly publicKeyPem: string;
  /** Sign `bytes` (ECDSA: SHA-256, DER signature; RSA-PSS: SHA-256, MGF1-SHA-256; ML-DSA: pure). */
  sign(bytes: Uint8Array): Promise<Uint8Array>;
}

const DOMAIN = Buffer.from('keybroker-audit-checkpoint-v1\0', 'ascii');

/** The bytes a checkpoint signs: domain ‖ u64 coveredSeq ‖ 32-byte coveredHash ‖ i64 time ms. */
export function checkpointStatement(coveredSeq: number, coveredHash: string, timeMs: number): Buffer {
  const b = Buffer.alloc(8 + 32 + 8);
  b.writeBigUInt64BE(BigInt(coveredSeq), 0);
  Buffer.from(coveredHash, 'hex').copy(b, 8);
  b.writeBigInt64BE(BigInt(timeMs), 40);
  return Buffer.concat([DOMAIN, b]);
}

/** SHA-256 (hex) of the key's SubjectPublicKeyInfo DER: names the key in checkpoints. */
export function keyIdOf(publicKey: string | KeyObject): string {
  const k = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  return createHash('sha256')
    .update(k.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/**
 * The checkpoint algorithm a public key verifies, from the key's own type (never from what an
 * entry claims): undefined for a key type checkpoints are never signed with.
 */
export function checkpointAlgOf(publicKey: KeyObject): string | undefined {
  const t = publicKey.asymmetricKeyType;
  if (t === 'ec')
    return publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ecdsa-p256' : undefined;
  if (t === 'rsa' || t === 'rsa-pss') return 'rsa-pss-sha256-3072';
  if (t === 'ml-dsa-44' || t === 'ml-dsa-65' || t === 'ml-dsa-87') return t;
  return undefined;
}

/**
 * Check one checkpoint signature with the algorithm the pinned key's type dictates; false when
 * `alg` (the entry's claim) names another one, on any mismatch, or for an unknown key type.
 */
export function verifyCheckpointSignature(
  alg: string,
  publicKey: KeyObject,
  statement: Uint8Array,
  signature: Uint8Array,
): boolean {
  const keyAlg = checkpointAlgOf(publicKey);
  if (keyAlg === undefined || keyAlg !== alg) return false;
  try {
    switch (keyAlg) {
      case 'ecdsa-p256':
        return verify('sha256', statement, publicKey, signature);
      case 'rsa-pss-sha256-3072':
        return verify(
          'sha256',
          statement,
          {
            key: publicKey,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: constants.RSA_PSS_SALTLEN_AUTO,
          },
          signature,
        );
      default:
        return verify(null, statement, publicKey, signature);
    }
  } catch {
    // A malformed signature is simply not a valid signature.
    return false;
  }
}

/** A software signer with a fresh key (tests, dev, and the `ml-dsa` path until the HSM has it). */
export function createSoftwareSigner(alg: 'ecdsa-p256' | 'ml-dsa-65' = 'ecdsa-p256'): CheckpointSigner {
  const { privateKey, publicKey } =
    alg === 'ecdsa-p256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('ml-dsa-65');
  return {
    alg,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    sign: async (bytes) => sign(alg === 'ecdsa-p256' ? 'sha256' : null, bytes, privateKey),
  };
}
