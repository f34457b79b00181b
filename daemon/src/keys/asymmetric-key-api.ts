/**
 * The contract between tenant asymmetric keys (asymmetric-keys.ts) and the gRPC Keys service.
 * As for KeyBrokerApi, the TenantRef comes from the authenticated identity (a customer may be
 * named in the request); all errors are KbError. Private keys never leave: no method returns one.
 */
import type { ImportWrapping } from '../store/import-job-rows.ts';
import type { ImportJob } from './key-import.ts';
import type { CustomerId, TenantRef } from '../ids.ts';
import type { Jwk } from '../pqc/public-key-export.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';
import type { ItemResult } from './key-broker-api.ts';

export interface AsymmetricKeyVersionInfo {
  readonly version: number;
  readonly state: 'enabled' | 'disabled';
  readonly createdAt: string;
  /** Operations made with this version (signatures, encapsulations, sealed boxes). */
  readonly uses: number;
}

/**
 * Rotation and version rules of one key, as for symmetric keys (KeyPolicy): a new primary when
 * the primary is older than rotationPeriodSeconds (0: never) or has made usageLimit operations
 * (0: no limit); sign / encapsulate / seal need primary >= minEncryptVersion; verify /
 * decapsulate / open refuse versions below minDecryptVersion.
 */
export interface AsymmetricKeyPolicy {
  readonly rotationPeriodSeconds: number;
  readonly usageLimit: number;
  readonly minEncryptVersion: number;
  readonly minDecryptVersion: number;
}

/**
 * Whose key: the caller's tenant, and for a customer-level key the customer (its private keys are
 * wrapped under that customer's CEK; destroying the customer crypto-shreds them).
 */
export type KeyOwner = TenantRef & { readonly customer?: CustomerId | undefined };

export interface CreateKeyOptions {
  /** Composite only: the ECDSA half is a non-extractable HSM key. */
  readonly hsmEcdsa?: boolean;
  /** Initial policy; unset fields take DEFAULT_ASYMMETRIC_POLICY (rotation on demand only). */
  readonly policy?: Partial<AsymmetricKeyPolicy>;
}

export interface AsymmetricKeyInfo {
  readonly keyId: string;
  readonly type: AsymmetricKeyType;
  /** The ECDSA half (composite) or the whole key (ecdsa-p256) is a non-extractable HSM key. */
  readonly inHsm: boolean;
  /** The newest version: it signs, encapsulates and is the default sealed-box recipient. */
  readonly primaryVersion: number;
  readonly versions: readonly AsymmetricKeyVersionInfo[];
  /** The customer owning a customer-level key; absent for tenant-level keys. */
  readonly customer?: string;
  readonly policy: AsymmetricKeyPolicy;
}

export interface PublicKeyResult {
  readonly type: AsymmetricKeyType;
  readonly version: number;
  /** Raw encoding (see public-key-export.ts). */
  readonly publicKey: Uint8Array;
}

export interface VerifyItem {
  readonly message: Uint8Array;
  readonly signature: Uint8Array;
}

export interface AsymmetricKeyApi {
  /** The type of a key, for authorisation before the call runs; undefined when unknown. Never throws. */
  algorithmOf(ref: KeyOwner, keyId: string): AsymmetricKeyType | undefined;
  createKey(
    ref: KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    opts?: CreateKeyOptions,
  ): Promise<AsymmetricKeyInfo>;
  /** A one-time wrapping key for importing key `keyId` of `type` (key-import.ts). */
  createImportJob(
    ref: KeyOwner,
    keyId: string,
    type: AsymmetricKeyType,
    wrapping: ImportWrapping,
    ttlSeconds?: number,
  ): Promise<ImportJob>;
  /** Open, check and store an imported private key; the job is used up. */
  importKey(
    ref: KeyOwner,
    jobId: string,
    wrappedKey: Uint8Array,
    publicKey?: Uint8Array,
  ): Promise<AsymmetricKeyInfo>;
  /** The key a job imports, for authorisation before the call runs; undefined when unknown. Never throws. */
  importJobTarget(ref: KeyOwner, jobId: unknown): { keyId: string; type: AsymmetricKeyType } | undefined;
  /** The tenant-level keys, or with `ref.customer` that customer's keys. */
  listKeys(ref: KeyOwner): Promise<readonly AsymmetricKeyInfo[]>;
  describeKey(ref: KeyOwner, keyId: string): Promise<AsymmetricKeyInfo>;
  /** New primary version of the same type; old versions keep verifying/decapsulating. */
  rotateKey(ref: KeyOwner, keyId: string): Promise<AsymmetricKeyInfo>;
  /** Disable or re-enable a version; the primary cannot be disabled. */
  setKeyVersionEnabled(
    ref: KeyOwner,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<AsymmetricKeyInfo>;
  /** Change some of a key's policy fields (validated as for symmetric keys). */
  setKeyPolicy(
    ref: KeyOwner,
    keyId: string,
    policy: Partial<AsymmetricKeyPolicy>,
  ): Promise<AsymmetricKeyInfo>;
  /** `version` undefined: the primary. */
  publicKey(ref: KeyOwner, keyId: string, version?: number): Promise<PublicKeyResult>;
  /** Every enabled version of every signature key of the tenant, kid "<key>.<version>". */
  jwks(ref: KeyOwner): Promise<{ keys: Jwk[] }>;
  /** Sign with the primary version. `context`: ML-DSA / composite context string. */
  sign(
    ref: KeyOwner,
    keyId: string,
    message: Uint8Array,
    context: Uint8Array,
  ): Promise<{ signature: Uint8Array; version: number }>;
  signBatch(
    ref: KeyOwner,
    keyId: string,
    messages: readonly Uint8Array[],
    context: Uint8Array,
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }>;
  /** `version` undefined: any enabled version that verifies. */
  verify(
    ref: KeyOwner,
    keyId: string,
    version: number | undefined,
    item: VerifyItem,
    context: Uint8Array,
  ): Promise<{ valid: boolean; version: number }>;
  verifyBatch(
    ref: KeyOwner,
    keyId: string,
    version: number | undefined,
    items: readonly VerifyItem[],
    context: Uint8Array,
  ): Promise<ItemResult<{ valid: boolean; version: number }>[]>;
  encapsulate(
    ref: KeyOwner,
    keyId: string,
  ): Promise<{ cipherText: Uint8Array; sharedSecret: Uint8Array; version: number }>;
  /** `count` encapsulations to the primary version, each with its own randomness. */
  encapsulateBatch(
    ref: KeyOwner,
    keyId: string,
    count: number,
  ): Promise<{ encapsulations: { cipherText: Uint8Array; sharedSecret: Uint8Array }[]; version: number }>;
  /** Every failure (wrong length, unusable key material) is DECRYPTION_FAILED. */
  decapsulate(
    ref: KeyOwner,
    keyId: string,
    version: number | undefined,
    cipherText: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; version: number }>;
  /** Many ciphertexts, one version; a bad item (wrong length) fails alone with DECRYPTION_FAILED. */
  decapsulateBatch(
    ref: KeyOwner,
    keyId: string,
    version: number | undefined,
    cipherTexts: readonly Uint8Array[],
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }>;
  sealBox(
    ref: KeyOwner,
    keyId: string,
    plaintext: Uint8Array,
    info: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ sealed: Uint8Array; version: number }>;
  /** `version` undefined: tries every enabled version, newest first. Failures: DECRYPTION_FAILED. */
  openBox(
    ref: KeyOwner,
    keyId: string,
    version: number | undefined,
    sealed: Uint8Array,
    info: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ plaintext: Uint8Array; version: number }>;
}
