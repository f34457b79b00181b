/**
 * Stored (never sent) formats of wrapped keys, v1. See FORMAT.md.
 *
 * Wrapped CEK / tenant-owned key (tenant file), AES-256-GCM under the effective TEK:
 *   0 u8 0x01 version ‖ 1 u8 type (0x10 CEK | 0x11 tenant-owned key) ‖ 12 nonce ‖ ciphertext ‖ 16 tag
 *   AAD = "keybroker cek v1" ‖ org ‖ tenant ‖ customer ‖ u32 CEK version ‖ u32 TEK version
 *      (0x11: "keybroker tkey v1" ‖ org ‖ tenant ‖ key id ‖ u32 key version ‖ u32 TEK version)
 *   so a wrapped row moved to another customer, tenant or version does not open.
 *
 * Bound tenant-owned key (tenant file, 0x13; written since 0x11 was retired for new rows):
 *   0 u8 0x01 ‖ 1 u8 0x13 ‖ 12 nonce ‖ AES-256-GCM(K, secret) ‖ 16 tag
 *   K = effective TEK (KEK kind 0x01), or HKDF-SHA256(ikm = CEK, salt = "", info = "keybroker
 *       cek-kek v1" ‖ org ‖ tenant ‖ customer ‖ u32 CEK version) (KEK kind 0x02), so the CEK that
 *       feeds the data plane's HKDF is never itself an AES key-encryption key.
 *   AAD = "keybroker tkey v2" ‖ u8 KEK kind ‖ org ‖ tenant ‖ customer (u8 0 for a TEK) ‖ key id ‖
 *         u32 key version ‖ u32 KEK version ‖ binding[32]
 *   binding: SHA-256 of the row's other fields (public key, algorithm, state, ...), computed by
 *   the row's owner (keys/asymmetric-key-binding.ts): a row whose public key or metadata was
 *   edited no longer opens, so the row is checked by opening it before its public key is used.
 *
 * Wrapped TEK (registry): 0x01 ‖ 0x12 ‖ u8 mechanism (0x01 AES-KWP, 0x02 AES-CBC-PAD+HMAC) ‖ HSM output.
 *   The HSM wrap has no AAD, so the TEK is bound to its identity by derivation instead:
 *   effective TEK = HKDF-SHA256(ikm = unwrapped bytes, salt = "", info = "keybroker tek v1" ‖ org ‖
 *   tenant ‖ u32 TEK version). A wrapped TEK swapped into another tenant's row unwraps to bytes
 *   that derive a different key, under which no CEK of that tenant opens.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { decryptionFailed } from '../errors.ts';
import type { WrapMechanism } from '../hsm/hsm.ts';
import { FORMAT_V1 } from './envelope-v1.ts';
import { ascii, concat, lpName, u32 } from './wire-codec.ts';

export const WrappedType = { cek: 0x10, tenantKey: 0x11, tek: 0x12, boundTenantKey: 0x13 } as const;
const MECH: Record<WrapMechanism, number> = { 'aes-kwp': 0x01, 'aes-cbc-pad-hmac-sha256': 0x02 };
const CEK_INFO = ascii('keybroker cek v1');
const TKEY_INFO = ascii('keybroker tkey v1');
const TEK_INFO = ascii('keybroker tek v1');
const TKEY_V2_INFO = ascii('keybroker tkey v2');
const CEK_KEK_INFO = ascii('keybroker cek-kek v1');
/** Which key wraps a bound tenant-owned key (0x13): the tenant's TEK or a customer's CEK. */
export type KekKind = 'tek' | 'cek';
const KEK_KIND: Record<KekKind, number> = { tek: 0x01, cek: 0x02 };
/** Length of a bound key's row binding (SHA-256). */
export const ROW_BINDING_BYTES = 32;
/** Largest key (e.g. a private key seed or expanded key) wrapped under a TEK. */
export const MAX_WRAPPED_SECRET_BYTES = 8192;

export interface CekIdentity {
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly cekVersion: number;
  readonly tekVersion: number;
}

export interface TenantKeyIdentity {
  readonly org: string;
  readonly tenant: string;
  readonly keyId: string;
  readonly keyVersion: number;
  readonly tekVersion: number;
}

function cekAad(id: CekIdentity): Uint8Array {
  return concat([
    CEK_INFO,
    lpName(id.org),
    lpName(id.tenant),
    lpName(id.customer),
    u32(id.cekVersion),
    u32(id.tekVersion),
  ]);
}

function tkeyAad(id: TenantKeyIdentity): Uint8Array {
  return concat([
    TKEY_INFO,
    lpName(id.org),
    lpName(id.tenant),
    lpName(id.keyId),
    u32(id.keyVersion),
    u32(id.tekVersion),
  ]);
}

/** Identity of a bound tenant-owned key (0x13). `customer` is '' exactly when `kek` is 'tek'. */
export interface BoundKeyIdentity {
  readonly org: string;
  readonly tenant: string;
  readonly kek: KekKind;
  readonly customer: string;
  readonly keyId: string;
  readonly keyVersion: number;
  /** TEK version (kek 'tek') or CEK version (kek 'cek') of the wrapping key. */
  readonly kekVersion: number;
  /** SHA-256 of the row's other fields, computed by the row's owner. */
  readonly binding: Uint8Array;
}

function boundAad(id: BoundKeyIdentity): Uint8Array {
  if ((id.kek === 'tek') !== (id.customer === '') || id.binding.length !== ROW_BINDING_BYTES)
    throw new RangeError('bound key identity: kek kind, customer or binding length');
  return concat([
    TKEY_V2_INFO,
    Uint8Array.of(KEK_KIND[id.kek]),
    lpName(id.org),
    lpName(id.tenant),
    id.customer === '' ? Uint8Array.of(0) : lpName(id.customer),
    lpName(id.keyId),
    u32(id.keyVersion),
    u32(id.kekVersion),
    id.binding,
  ]);
}

/** The AES key of a bound key: the TEK itself, or a wrapping key derived from the CEK (one key, one purpose). */
function boundKek(kek: Uint8Array, id: BoundKeyIdentity): Uint8Array {
  if (id.kek === 'tek') return kek;
  const info = concat([
    CEK_KEK_INFO,
    lpName(id.org),
    lpName(id.tenant),
    lpName(id.customer),
    u32(id.kekVersion),
  ]);
  return new Uint8Array(hkdfSync('sha256', kek, new Uint8Array(0), info, 32));
}

function seal(type: number, tek: Uint8Array, secret: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', tek, nonce);
  c.setAAD(aad);
  const body = c.update(secret);
  c.final();
  return concat([Uint8Array.of(FORMAT_V1, type), nonce, body, c.getAuthTag()]);
}

function open(type: number, tek: Uint8Array, wrapped: Uint8Array, aad: Uint8Array): Uint8Array {
  if (wrapped.length < 2 + 12 + 16 || wrapped.length > 2 + 12 + 16 + MAX_WRAPPED_SECRET_BYTES) {
    throw decryptionFailed();
  }
  if (wrapped[0] !== FORMAT_V1 || wrapped[1] !== type) throw decryptionFailed();
  const d = createDecipheriv('aes-256-gcm', tek, wrapped.subarray(2, 14));
  d.setAAD(aad);
  d.setAuthTag(wrapped.subarray(wrapped.length - 16));
  const out = d.update(wrapped.subarray(14, wrapped.length - 16));
  try {
    d.final();
  } catch (err) {
    out.fill(0);
    throw decryptionFailed(err);
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Wrap a CEK under an effective TEK, bound to its identity. */
export function wrapCek(tek: Uint8Array, id: CekIdentity, cek: Uint8Array): Uint8Array {
  return seal(WrappedType.cek, tek, cek, cekAad(id));
}

export function unwrapCek(tek: Uint8Array, id: CekIdentity, wrapped: Uint8Array): Uint8Array {
  return open(WrappedType.cek, tek, wrapped, cekAad(id));
}

/**
 * Wrap a tenant-owned key as the legacy 0x11 (identity only, no row binding). New rows are 0x13;
 * a TEK rotation still rewraps 0x11 rows in place until their first use upgrades them.
 */
export function wrapTenantKey(tek: Uint8Array, id: TenantKeyIdentity, secret: Uint8Array): Uint8Array {
  return seal(WrappedType.tenantKey, tek, secret, tkeyAad(id));
}

export function unwrapTenantKey(tek: Uint8Array, id: TenantKeyIdentity, wrapped: Uint8Array): Uint8Array {
  return open(WrappedType.tenantKey, tek, wrapped, tkeyAad(id));
}

/**
 * Wrap a tenant-owned key as 0x13 under `kek` (the effective TEK, or the customer's CEK for kek
 * 'cek': the wrapping key is derived from it here), bound to its identity and row binding.
 */
export function wrapBoundKey(kek: Uint8Array, id: BoundKeyIdentity, secret: Uint8Array): Uint8Array {
  const k = boundKek(kek, id);
  try {
    return seal(WrappedType.boundTenantKey, k, secret, boundAad(id));
  } finally {
    if (k !== kek) k.fill(0);
  }
}

export function unwrapBoundKey(kek: Uint8Array, id: BoundKeyIdentity, wrapped: Uint8Array): Uint8Array {
  const k = boundKek(kek, id);
  try {
    return open(WrappedType.boundTenantKey, k, wrapped, boundAad(id));
  } finally {
    if (k !== kek) k.fill(0);
  }
}

/** The type byte of a stored wrapped key (undefined when too short to have one). */
export function wrappedTypeOf(wrapped: Uint8Array): number | undefined {
  return wrapped.length >= 2 && wrapped[0] === FORMAT_V1 ? wrapped[1] : undefined;
}

/** The effective TEK: binds unwrapped HSM output to (org, tenant, TEK version). */
export function deriveTek(raw: Uint8Array, org: string, tenant: string, tekVersion: number): Uint8Array {
  const info = concat([TEK_INFO, lpName(org), lpName(tenant), u32(tekVersion)]);
  return new Uint8Array(hkdfSync('sha256', raw, new Uint8Array(0), info, 32));
}

/** Frame the HSM's wrap output with version, type and mechanism. */
export function frameWrappedTek(mech: WrapMechanism, hsmOutput: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(FORMAT_V1, WrappedType.tek, MECH[mech]), hsmOutput]);
}

/** The HSM's wrap output inside a framed TEK; the mechanism must match the profile's. */
export function unframeWrappedTek(mech: WrapMechanism, framed: Uint8Array): Uint8Array {
  if (framed.length < 3 + 16 || framed.length > 512) throw decryptionFailed();
  if (framed[0] !== FORMAT_V1 || framed[1] !== WrappedType.tek || framed[2] !== MECH[mech])
    throw decryptionFailed();
  return framed.subarray(3);
}
