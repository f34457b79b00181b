/**
 * PKCS#11 attribute templates for the objects the broker creates. Built fresh per call (pkcs11js
 * mutates templates) and filtered through the profile's quirks.
 */
import pkcs11js from 'pkcs11js';
import type { Template } from 'pkcs11js';
import { P256_EC_PARAMS } from './key-encoding.ts';

const P = pkcs11js;

/** Drop attributes a module refuses (profile quirks), named like `CKA_EXTRACTABLE`. */
export function omit(template: Template, names: readonly string[] | undefined): Template {
  if (!names || names.length === 0) return template;
  const drop = new Set(names.map((n) => (P as unknown as Record<string, number>)[n]));
  return template.filter((a) => !drop.has(a.type));
}

function identity(label: string): Template {
  return [
    { type: P.CKA_LABEL, value: label },
    { type: P.CKA_ID, value: Buffer.from(label, 'utf8') },
  ];
}

/**
 * CKA_ALLOWED_MECHANISMS value: a CK_MECHANISM_TYPE array as native CK_ULONGs (8 bytes,
 * little-endian: 64-bit Linux on x86-64 and arm64, where the daemon runs).
 */
export function mechanismList(mechs: readonly number[]): Buffer {
  const b = Buffer.alloc(8 * mechs.length);
  mechs.forEach((m, i) => b.writeBigUInt64LE(BigInt(m), 8 * i));
  return b;
}

/** CKA_ALLOWED_MECHANISMS when the profile supports it (undefined: the attribute is left out). */
function allowedAttr(allowed: readonly number[] | undefined): Template {
  return allowed === undefined ? [] : [{ type: P.CKA_ALLOWED_MECHANISMS, value: mechanismList(allowed) }];
}

/**
 * The root AES-256 key: token, private, sensitive, never extractable; wrap/unwrap only.
 * CKA_ENCRYPT/DECRYPT only for a root made for in-HSM AES-GCM (`encrypt`), which no OEK is
 * (review L3); `allowed` restricts it to the wrap mechanism (and GCM) where the token supports it.
 */
export function rootAesTemplate(
  label: string,
  o: { encrypt: boolean; allowed?: readonly number[] | undefined },
): Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    { type: P.CKA_VALUE_LEN, value: 32 },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_WRAP, value: true },
    { type: P.CKA_UNWRAP, value: true },
    { type: P.CKA_ENCRYPT, value: o.encrypt },
    { type: P.CKA_DECRYPT, value: o.encrypt },
    { type: P.CKA_SIGN, value: false },
    { type: P.CKA_VERIFY, value: false },
    { type: P.CKA_DERIVE, value: false },
    ...allowedAttr(o.allowed),
    ...identity(label),
  ];
}

/** The companion HMAC-SHA256 key of a CBC-PAD root: same label, generic secret, sign/verify only. */
export function rootHmacTemplate(label: string, allowed?: readonly number[]): Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    { type: P.CKA_VALUE_LEN, value: 32 },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_SIGN, value: true },
    { type: P.CKA_VERIFY, value: true },
    { type: P.CKA_WRAP, value: false },
    { type: P.CKA_UNWRAP, value: false },
    { type: P.CKA_ENCRYPT, value: false },
    { type: P.CKA_DECRYPT, value: false },
    { type: P.CKA_DERIVE, value: false },
    ...allowedAttr(allowed),
    ...identity(label),
  ];
}

/** A scratch session object holding key bytes to be wrapped; destroyed right after C_WrapKey. */
export function scratchSecretTemplate(value: Buffer, needPrivate: boolean): Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_PRIVATE, value: needPrivate },
    { type: P.CKA_SENSITIVE, value: false },
    { type: P.CKA_EXTRACTABLE, value: true },
    { type: P.CKA_VALUE, value },
  ];
}

/** Template for C_UnwrapKey into a scratch session object whose CKA_VALUE is read, then destroyed. */
export function unwrapScratchTemplate(valueLen: number | undefined): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_SENSITIVE, value: false },
    { type: P.CKA_EXTRACTABLE, value: true },
  ];
  if (valueLen !== undefined) t.push({ type: P.CKA_VALUE_LEN, value: valueLen });
  return t;
}

/** Lookup template: objects of `cls` (and `keyType`) with this label. */
export function findTemplate(label: string, cls: number, keyType?: number): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: cls },
    { type: P.CKA_LABEL, value: label },
  ];
  if (keyType !== undefined) t.push({ type: P.CKA_KEY_TYPE, value: keyType });
  return t;
}

/** Public/private templates of a non-extractable P-256 signing pair. */
export function ecdsaP256Templates(
  label: string,
  allowed?: readonly number[],
): { pub: Template; priv: Template } {
  return {
    pub: [
      { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: false },
      { type: P.CKA_VERIFY, value: true },
      { type: P.CKA_EC_PARAMS, value: P256_EC_PARAMS },
      ...identity(label),
    ],
    priv: signingPrivate(label, P.CKK_EC, allowed),
  };
}

/** Public/private templates of a non-extractable RSA-3072 signing pair (e = 65537). */
export function rsa3072Templates(
  label: string,
  allowed?: readonly number[],
): { pub: Template; priv: Template } {
  return {
    pub: [
      { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: false },
      { type: P.CKA_VERIFY, value: true },
      { type: P.CKA_MODULUS_BITS, value: 3072 },
      { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      ...identity(label),
    ],
    priv: signingPrivate(label, P.CKK_RSA, allowed),
  };
}

/** The private half of a signing pair; `allowed`: its one signing mechanism, where supported. */
function signingPrivate(label: string, keyType: number, allowed: readonly number[] | undefined): Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
    { type: P.CKA_KEY_TYPE, value: keyType },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_SIGN, value: true },
    { type: P.CKA_DECRYPT, value: false },
    { type: P.CKA_UNWRAP, value: false },
    { type: P.CKA_DERIVE, value: false },
    ...allowedAttr(allowed),
    ...identity(label),
  ];
}
