/**
 * Signed checkpoints. A checkpoint entry signs the chain position just before it; the signer is
 * anything that can sign bytes (the daemon passes an HSM-held ECDSA P-256 or RSA-PSS key, later
 * ML-DSA). Verification uses only the public key, offline.
 */
import { constants, createHash, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** Signs checkpoint statements. `alg` is recorded in each checkpoint and drives verification. */
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

/** Check one checkpoint signature; false on any mismatch or unknown algorithm. */
export function verifyCheckpointSignature(
  alg: string,
  publicKey: KeyObject,
  statement: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    switch (alg) {
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
      case 'ml-dsa-44':
      case 'ml-dsa-65':
      case 'ml-dsa-87':
        return verify(null, statement, publicKey, signature);
      default:
        return false;
    }
  } catch {
    // A malformed signature or a key of the wrong type is simply not a valid signature.
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
