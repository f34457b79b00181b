/**
 * The contract between tenant asymmetric keys (asymmetric-keys.ts) and the gRPC Keys service.
 * As for KeyBrokerApi, the TenantRef comes from the authenticated identity; all errors are
 * KbError. Private keys never leave: no method returns one.
 */
import type { TenantRef } from '../ids.ts';
import type { Jwk } from '../pqc/public-key-export.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';
import type { ItemResult } from './key-broker-api.ts';

export interface AsymmetricKeyVersionInfo {
  readonly version: number;
  readonly state: 'enabled' | 'disabled';
  readonly createdAt: string;
}

export interface AsymmetricKeyInfo {
  readonly keyId: string;
  readonly type: AsymmetricKeyType;
  /** The ECDSA half (composite) or the whole key (ecdsa-p256) is a non-extractable HSM key. */
  readonly inHsm: boolean;
  /** The newest version: it signs, encapsulates and is the default sealed-box recipient. */
  readonly primaryVersion: number;
  readonly versions: readonly AsymmetricKeyVersionInfo[];
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
  algorithmOf(ref: TenantRef, keyId: string): AsymmetricKeyType | undefined;
  createKey(
    ref: TenantRef,
    keyId: string,
    type: AsymmetricKeyType,
    opts?: { hsmEcdsa?: boolean },
  ): Promise<AsymmetricKeyInfo>;
  listKeys(ref: TenantRef): Promise<readonly AsymmetricKeyInfo[]>;
  describeKey(ref: TenantRef, keyId: string): Promise<AsymmetricKeyInfo>;
  /** New primary version of the same type; old versions keep verifying/decapsulating. */
  rotateKey(ref: TenantRef, keyId: string): Promise<AsymmetricKeyInfo>;
  /** Disable or re-enable a version; the primary cannot be disabled. */
  setKeyVersionEnabled(
    ref: TenantRef,
    keyId: string,
    version: number,
    enabled: boolean,
  ): Promise<AsymmetricKeyInfo>;
  /** `version` undefined: the primary. */
  publicKey(ref: TenantRef, keyId: string, version?: number): Promise<PublicKeyResult>;
  /** Every enabled version of every signature key of the tenant, kid "<key>.<version>". */
  jwks(ref: TenantRef): Promise<{ keys: Jwk[] }>;
  /** Sign with the primary version. `context`: ML-DSA / composite context string. */
  sign(
    ref: TenantRef,
    keyId: string,
    message: Uint8Array,
    context: Uint8Array,
  ): Promise<{ signature: Uint8Array; version: number }>;
  signBatch(
    ref: TenantRef,
    keyId: string,
    messages: readonly Uint8Array[],
    context: Uint8Array,
  ): Promise<{ version: number; results: ItemResult<Uint8Array>[] }>;
  /** `version` undefined: any enabled version that verifies. */
  verify(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    item: VerifyItem,
    context: Uint8Array,
  ): Promise<{ valid: boolean; version: number }>;
  verifyBatch(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    items: readonly VerifyItem[],
    context: Uint8Array,
  ): Promise<ItemResult<{ valid: boolean; version: number }>[]>;
  encapsulate(
    ref: TenantRef,
    keyId: string,
  ): Promise<{ cipherText: Uint8Array; sharedSecret: Uint8Array; version: number }>;
  /** Every failure (wrong length, unusable key material) is DECRYPTION_FAILED. */
  decapsulate(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    cipherText: Uint8Array,
  ): Promise<{ sharedSecret: Uint8Array; version: number }>;
  sealBox(
    ref: TenantRef,
    keyId: string,
    plaintext: Uint8Array,
    info: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ sealed: Uint8Array; version: number }>;
  /** `version` undefined: tries every enabled version, newest first. Failures: DECRYPTION_FAILED. */
  openBox(
    ref: TenantRef,
    keyId: string,
    version: number | undefined,
    sealed: Uint8Array,
    info: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ plaintext: Uint8Array; version: number }>;
}
