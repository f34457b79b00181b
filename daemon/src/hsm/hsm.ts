/**
 * The HSM as the rest of keybroker sees it. Only `daemon/src/hsm/` imports pkcs11js/graphene;
 * nothing here knows about orgs or tenants. Implementations: Pkcs11Hsm (SoftHSM2, opencryptoki,
 * vendor modules through profiles) and, for unit tests of logic above this interface only, a fake.
 *
 * Keys are addressed by a stable label/CKA_ID, never by a PKCS#11 session or object handle.
 */

/** A token object the broker created, by its stable identity. */
export interface HsmKeyRef {
  /** CKA_LABEL; also the CKA_ID (UTF-8) so either lookup finds it. */
  readonly label: string;
  readonly kind: 'root' | 'signing';
}

/** How a root key wraps: decided by the profile, recorded next to every wrapped blob. */
export type WrapMechanism = 'aes-kwp' | 'aes-cbc-pad-hmac-sha256';

/** Signing keys the HSM can hold (non-extractable). */
export type HsmSigningAlgorithm = 'ecdsa-p256' | 'rsa-pss-sha256-3072';

export interface HsmCapabilities {
  /** The wrap mechanism this profile uses for root keys. */
  readonly wrap: WrapMechanism;
  /** AES-GCM inside the HSM (C_Encrypt/C_Decrypt with CKM_AES_GCM). */
  readonly aesGcm: boolean;
  /** Signing algorithms the token can generate and use, best first. */
  readonly signing: readonly HsmSigningAlgorithm[];
}

/** How a root key is made. */
export interface RootKeyOptions {
  /**
   * Also allow in-HSM AES-GCM (encryptGcm/decryptGcm) on a profile with `aesGcm`. The broker's
   * OEKs never are: they only wrap (review L3); doctor and the HSM suite test GCM with such a key.
   */
  readonly gcm?: boolean;
}

export interface HsmHealth {
  readonly ok: boolean;
  /** Human-readable reason when not ok; never contains PINs. */
  readonly reason?: string;
  readonly sessionsInUse: number;
  readonly sessionsTotal: number;
}

export interface Hsm {
  readonly profileName: string;
  readonly capabilities: HsmCapabilities;

  /**
   * Create a non-extractable, sensitive AES-256 token key (plus, for the CBC-PAD profile, its
   * companion HMAC key) under `label`. Fails with ALREADY_EXISTS if the label is taken.
   */
  generateRootKey(label: string, opts?: RootKeyOptions): Promise<HsmKeyRef>;
  /** Look a key up by label (cached after the first find); undefined if absent. */
  findKey(label: string, kind: HsmKeyRef['kind']): Promise<HsmKeyRef | undefined>;
  /** C_DestroyObject on the key (and companions). Idempotent: absent is not an error. */
  destroyKey(ref: HsmKeyRef): Promise<void>;

  /** Wrap 16-64 bytes of key material under a root key with the profile's mechanism. */
  wrapKey(root: HsmKeyRef, key: Uint8Array): Promise<Uint8Array>;
  /** Inverse of wrapKey. Any tamper or wrong root key throws KbError DECRYPTION_FAILED. */
  unwrapKey(root: HsmKeyRef, wrapped: Uint8Array): Promise<Uint8Array>;

  /** AES-256-GCM in the HSM with a broker-generated 96-bit IV; returns iv ‖ ciphertext ‖ tag. */
  encryptGcm(root: HsmKeyRef, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Inverse of encryptGcm; tamper or wrong AAD throws DECRYPTION_FAILED. */
  decryptGcm(root: HsmKeyRef, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;

  /** Generate a non-extractable signing key pair in the token; returns the public key as SPKI DER. */
  generateSigningKey(label: string, alg: HsmSigningAlgorithm): Promise<{ ref: HsmKeyRef; spki: Uint8Array }>;
  /** The public key (SPKI DER) of a signing key. */
  publicKey(ref: HsmKeyRef): Promise<Uint8Array>;
  /**
   * Sign `message` (hashed in software with SHA-256 first). ECDSA returns DER (as Node's
   * crypto.verify expects by default); RSA-PSS returns the raw signature.
   */
  sign(ref: HsmKeyRef, message: Uint8Array): Promise<{ alg: HsmSigningAlgorithm; signature: Uint8Array }>;

  generateRandom(length: number): Promise<Uint8Array>;
  health(): HsmHealth;
  /** Finalize sessions and the module. Further calls throw SHUTTING_DOWN. */
  close(): Promise<void>;
}
