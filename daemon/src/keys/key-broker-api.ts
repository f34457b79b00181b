/**
 * The contract between the key hierarchy (keys/) and the gRPC layer (api/): the API is a thin
 * layer over this. Tenant and org always come from the authenticated identity, never from a
 * request body; that is the caller's job, and these methods trust the TenantRef they are given.
 * All errors thrown are KbError (errors.ts).
 */
import type { KbError } from '../errors.ts';
import type { CustomerId, KeyVersion, OrgId, TenantId, TenantRef } from '../ids.ts';

export type KeyLevel = 'org' | 'tenant' | 'customer';
export type KeyVersionState = 'enabled' | 'disabled' | 'destroyed';

export interface KeyVersionInfo {
  readonly version: KeyVersion;
  readonly state: KeyVersionState;
  readonly createdAt: string; // RFC 3339
  /** Operations performed under this version (usage-limit rotation counts these). */
  readonly uses: number;
}

/** Rotation and version window of one key (one level of one entity). */
export interface KeyPolicy {
  /** Rotate when the primary is older than this; 0 disables scheduled rotation. Default 90 days. */
  readonly rotationPeriodSeconds: number;
  /** Rotate after this many operations on the primary; 0 disables. */
  readonly usageLimit: number;
  readonly minEncryptVersion: KeyVersion;
  readonly minDecryptVersion: KeyVersion;
}

export interface KeyInfo {
  readonly level: KeyLevel;
  readonly primary: KeyVersion;
  readonly versions: readonly KeyVersionInfo[];
  readonly policy: KeyPolicy;
}

export interface OrgInfo {
  readonly org: OrgId;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly key: KeyInfo;
}
export interface TenantInfo {
  readonly org: OrgId;
  readonly tenant: TenantId;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly key: KeyInfo;
}
/** One name of a bulk tenant creation: created (and durable), or a per-item user error. */
export type TenantCreateResult =
  | { readonly tenant: TenantId; readonly ok: true; readonly info: TenantInfo }
  | { readonly tenant: TenantId; readonly ok: false; readonly error: KbError };

export interface CustomerInfo {
  readonly org: OrgId;
  readonly tenant: TenantId;
  readonly customer: CustomerId;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly key: KeyInfo;
}

export interface EncryptRequest {
  /** Defaults to DEFAULT_CUSTOMER. */
  readonly customer?: CustomerId;
  readonly plaintext: Uint8Array;
  /** Caller's encryption context, bound to the ciphertext. May be empty. */
  readonly aad: Uint8Array;
}
export interface EncryptResult {
  readonly ciphertext: Uint8Array;
  readonly keyVersion: KeyVersion;
}
export interface DecryptRequest {
  readonly ciphertext: Uint8Array;
  readonly aad: Uint8Array;
}
export interface DecryptResult {
  readonly plaintext: Uint8Array;
  readonly customer: CustomerId;
  readonly keyVersion: KeyVersion;
}
export interface DataKeyRequest {
  readonly customer?: CustomerId;
  readonly aad: Uint8Array;
  /** 16 or 32 (default 32). */
  readonly length?: number;
}
export interface DataKeyResult {
  /** The caller's copy; the broker keeps none. */
  readonly plaintextKey: Uint8Array;
  readonly wrappedKey: Uint8Array;
  readonly keyVersion: KeyVersion;
}
export interface RewrapResult {
  readonly ciphertext: Uint8Array;
  readonly keyVersion: KeyVersion;
  /** The customer whose data it is (the same before and after). */
  readonly customer?: CustomerId;
}

/**
 * Asked with the customer a ciphertext, wrapped key or stream header names, after parsing and
 * before any key is loaded; false refuses it with the one opaque decrypt error (the caller's
 * policy check: an unauthorized customer looks like a tampered ciphertext).
 */
export type CustomerGuard = (customer: CustomerId) => boolean;

/** Per-item result of a batch: user errors per item; internal errors abort the call instead. */
export type ItemResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: KbError };

/** Chunked AEAD stream (wire/FORMAT.md): header first, then sealed chunks, the last one marked final. */
export interface StreamEncryptor {
  readonly header: Uint8Array;
  /** The CEK version the stream is sealed under. */
  readonly keyVersion?: KeyVersion;
  /** Seal one chunk (≤ the format's max chunk size). `final` must be set on the last chunk only. */
  seal(chunk: Uint8Array, final: boolean): Uint8Array;
}
export interface StreamDecryptor {
  /** Whose stream it is and under which CEK version (from the authenticated header). */
  readonly customer?: CustomerId;
  readonly keyVersion?: KeyVersion;
  /** Open one sealed chunk in order. Returns the plaintext and whether it was the final chunk. */
  open(sealedChunk: Uint8Array): { plaintext: Uint8Array; final: boolean };
  /** Throws DECRYPTION_FAILED if the final chunk was never seen (truncation). */
  finish(): void;
}

export interface ShredReceipt {
  /** Canonical JSON of the receipt body (what was destroyed, when, HSM key labels/versions, audit position). */
  readonly body: string;
  readonly signatureAlgorithm: string;
  /** Base64 signature over the UTF-8 bytes of `body`. */
  readonly signature: string;
  /**
   * PEM SPKI of the broker signing key. It does not prove origin by itself: verify against the
   * pinned key (BrokerKeys.receiptKey, `keybroker receipt verify --key|--fingerprint`).
   */
  readonly publicKeyPem: string;
}

/** A broker public key as published for pinning: SPKI PEM, SHA-256 of the SPKI DER, algorithm. */
export interface PublishedKey {
  readonly publicKeyPem: string;
  readonly sha256: string;
  readonly algorithm: string;
}

/** The broker's signing keys, published out of band for pinning (Admin.GetBrokerKeys). */
export interface BrokerKeys {
  readonly receiptKey: PublishedKey;
  /** Absent when the audit log is disabled. */
  readonly auditCheckpointKey?: PublishedKey;
  /** Random id of this broker's registry, named in every v2 receipt. */
  readonly brokerInstance: string;
}

/** Options of a destroy: the approval it executes (recorded with the shred, see shred-intents.ts). */
export interface ShredOptions {
  readonly approvalId?: string;
}

export interface KeyBrokerApi {
  // --- lifecycle (admin) ---
  createOrg(org: OrgId): Promise<OrgInfo>;
  listOrgs(): Promise<readonly OrgInfo[]>;
  describeOrg(org: OrgId): Promise<OrgInfo>;
  setOrgEnabled(org: OrgId, enabled: boolean): Promise<OrgInfo>;

  createTenant(org: OrgId, tenant: TenantId, policy?: Partial<KeyPolicy>): Promise<TenantInfo>;
  /**
   * Create many tenants with one durability barrier (Admin.CreateTenants): distinct names, a
   * bounded count; existing names come back as per-item ALREADY_EXISTS, anything else fails all.
   */
  createTenants?(
    org: OrgId,
    tenants: readonly TenantId[],
    policy?: Partial<KeyPolicy>,
  ): Promise<readonly TenantCreateResult[]>;
  listTenants(org: OrgId): Promise<readonly TenantInfo[]>;
  describeTenant(ref: TenantRef): Promise<TenantInfo>;
  setTenantEnabled(ref: TenantRef, enabled: boolean): Promise<TenantInfo>;

  createCustomer(ref: TenantRef, customer: CustomerId, policy?: Partial<KeyPolicy>): Promise<CustomerInfo>;
  listCustomers(ref: TenantRef): Promise<readonly CustomerInfo[]>;
  describeCustomer(ref: TenantRef, customer: CustomerId): Promise<CustomerInfo>;
  setCustomerEnabled(ref: TenantRef, customer: CustomerId, enabled: boolean): Promise<CustomerInfo>;

  /** Rotating a level rewraps the level below; data ciphertexts are untouched. */
  rotateOrgKey(org: OrgId): Promise<OrgInfo>;
  rotateTenantKey(ref: TenantRef): Promise<TenantInfo>;
  rotateCustomerKey(ref: TenantRef, customer: CustomerId): Promise<CustomerInfo>;
  /** Set rotation period, usage limit, min encrypt/decrypt versions of a tenant's or customer's key. */
  setKeyPolicy(
    ref: TenantRef,
    customer: CustomerId | undefined,
    policy: Partial<KeyPolicy>,
  ): Promise<KeyInfo>;
  setKeyVersionEnabled(
    ref: TenantRef,
    customer: CustomerId | undefined,
    version: KeyVersion,
    enabled: boolean,
  ): Promise<KeyInfo>;
  /** Scheduled rotation pass: rotates every due key (of `org` only, when given); one failure does not stop the others. */
  rotateDueKeys(now?: Date, org?: OrgId): Promise<{ rotated: number; failed: number }>;

  /** Crypto-shredding: ends in C_DestroyObject in the HSM; returns a signed receipt. */
  destroyTenant(ref: TenantRef, opts?: ShredOptions): Promise<ShredReceipt>;
  destroyCustomer(ref: TenantRef, customer: CustomerId, opts?: ShredOptions): Promise<ShredReceipt>;
  /**
   * The receipt of the shred that `approvalId` executed on `target` (finished first if a crash
   * interrupted it), or undefined when no shred recorded that approval.
   */
  shredReceiptForApproval?(
    approvalId: string,
    target: { org: string; tenant: string; customer?: string },
  ): Promise<ShredReceipt | undefined>;
  /** The broker's public keys, for pinning receipt and checkpoint verification out of band. */
  brokerKeys?(): Promise<BrokerKeys>;

  // --- data plane ---
  encrypt(ref: TenantRef, req: EncryptRequest): Promise<EncryptResult>;
  decrypt(ref: TenantRef, req: DecryptRequest, guard?: CustomerGuard): Promise<DecryptResult>;
  encryptBatch(ref: TenantRef, items: readonly EncryptRequest[]): Promise<ItemResult<EncryptResult>[]>;
  decryptBatch(
    ref: TenantRef,
    items: readonly DecryptRequest[],
    guard?: CustomerGuard,
  ): Promise<ItemResult<DecryptResult>[]>;
  generateDataKey(ref: TenantRef, req: DataKeyRequest): Promise<DataKeyResult>;
  decryptDataKey(
    ref: TenantRef,
    req: { wrappedKey: Uint8Array; aad: Uint8Array },
    guard?: CustomerGuard,
  ): Promise<{ plaintextKey: Uint8Array; customer?: CustomerId; keyVersion?: KeyVersion }>;
  /** Move a ciphertext or wrapped data key to the primary version without returning plaintext. */
  rewrap(ref: TenantRef, req: DecryptRequest, guard?: CustomerGuard): Promise<RewrapResult>;
  encryptStream(ref: TenantRef, req: { customer?: CustomerId; aad: Uint8Array }): Promise<StreamEncryptor>;
  decryptStream(
    ref: TenantRef,
    req: { header: Uint8Array; aad: Uint8Array },
    guard?: CustomerGuard,
  ): Promise<StreamDecryptor>;

  /** HSM reachable, registry open, degraded-mode state. */
  health(): { ready: boolean; degraded: boolean; reason?: string };
  /** Zero caches, close stores. Does not close the HSM (the owner of the Hsm does). */
  close(): Promise<void>;
}
