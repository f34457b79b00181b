/** Maps between keybroker.v1.Keys messages (keys.proto) and AsymmetricKeyApi values. */
import { KbError } from '../errors.ts';
import type { AsymmetricKeyInfo } from '../keys/asymmetric-key-api.ts';
import type { AsymmetricKeyType } from '../keys/asymmetric-key-store.ts';
import type { ImportWrapping } from '../keys/key-import.ts';

const ALGORITHMS: Readonly<Record<string, AsymmetricKeyType>> = {
  KEY_ALGORITHM_ML_KEM_768: 'ml-kem-768',
  KEY_ALGORITHM_ML_KEM_1024: 'ml-kem-1024',
  KEY_ALGORITHM_X_WING: 'x-wing',
  KEY_ALGORITHM_ML_DSA_44: 'ml-dsa-44',
  KEY_ALGORITHM_ML_DSA_65: 'ml-dsa-65',
  KEY_ALGORITHM_ML_DSA_87: 'ml-dsa-87',
  KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256: 'composite-mldsa65-ecdsa-p256',
  KEY_ALGORITHM_ED25519: 'ed25519',
  KEY_ALGORITHM_ECDSA_P256: 'ecdsa-p256',
};
const ENUM_OF = new Map(Object.entries(ALGORITHMS).map(([k, v]) => [v, k]));

/** The KeyAlgorithm enum name of a request as a key type (UNSPECIFIED or unknown: INVALID_ARGUMENT). */
export function keyAlgorithmField(v: unknown): AsymmetricKeyType {
  const t = typeof v === 'string' ? ALGORITHMS[v] : undefined;
  if (t === undefined)
    throw new KbError('INVALID_ARGUMENT', 'algorithm must be a KeyAlgorithm other than UNSPECIFIED');
  return t;
}

export function keyAlgorithmEnum(t: AsymmetricKeyType): string {
  return ENUM_OF.get(t) ?? 'KEY_ALGORITHM_UNSPECIFIED';
}

/** The name the policy engine (and its FIPS mode) knows the algorithm by; composites join with "+". */
export function policyAlgorithm(t: AsymmetricKeyType): string {
  return t === 'composite-mldsa65-ecdsa-p256' ? 'ml-dsa-65+ecdsa-p256' : t;
}

export function asymmetricKeyMessage(k: AsymmetricKeyInfo): object {
  return {
    keyId: k.keyId,
    algorithm: keyAlgorithmEnum(k.type),
    inHsm: k.inHsm,
    primaryVersion: k.primaryVersion,
    versions: k.versions.map((v) => ({
      version: v.version,
      state: v.state === 'enabled' ? 'KEY_VERSION_STATE_ENABLED' : 'KEY_VERSION_STATE_DISABLED',
      createTime: v.createdAt,
      uses: v.uses,
    })),
    policy: { ...k.policy },
    customer: k.customer ?? '',
  };
}

/** A per-item user error as an ItemError message. */
export function itemErrorMessage(err: KbError): object {
  return { code: err.status, reason: err.code, message: err.safeMessage };
}

const WRAPPINGS: Readonly<Record<string, ImportWrapping>> = {
  IMPORT_WRAPPING_UNSPECIFIED: 'ml-kem-768-aes-kwp',
  IMPORT_WRAPPING_ML_KEM_768_AES_KWP: 'ml-kem-768-aes-kwp',
  IMPORT_WRAPPING_RSA_OAEP_3072_SHA256_AES_KWP: 'rsa-oaep-3072-sha256-aes-kwp',
};

/** The ImportWrapping enum name of a request (absent: ML-KEM-768 + AES-KWP). */
export function importWrappingField(v: unknown): ImportWrapping {
  const w = v === undefined ? 'ml-kem-768-aes-kwp' : typeof v === 'string' ? WRAPPINGS[v] : undefined;
  if (w === undefined) throw new KbError('INVALID_ARGUMENT', 'wrapping must be an ImportWrapping');
  return w;
}

export function importWrappingEnum(w: ImportWrapping): string {
  return w === 'ml-kem-768-aes-kwp'
    ? 'IMPORT_WRAPPING_ML_KEM_768_AES_KWP'
    : 'IMPORT_WRAPPING_RSA_OAEP_3072_SHA256_AES_KWP';
}
