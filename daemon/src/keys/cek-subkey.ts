/**
 * Keys derived from a customer key (CEK) for one purpose each: HKDF-SHA256(ikm = CEK, no salt,
 * info = label ‖ context). Distinct labels keep them apart from the data keys of envelope-v1
 * ("keybroker dek v1", random salt per message) and from each other, so a blind-index key or a
 * secrets key never equals, or reveals, a key that opens a customer's ciphertexts.
 */
import { createSecretKey, hkdfSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { TenantRow } from '../store/registry-store.ts';
import type { Hierarchy } from './hierarchy.ts';

/** HKDF info labels; never reuse one for another purpose. */
export const SUBKEY_LABEL = {
  blindIndex: 'keybroker blind index v1',
  secret: 'keybroker secret v1',
} as const;

const NO_SALT = new Uint8Array(0);

/** The 32-byte subkey of `cek` for `info` (label ‖ context); the caller zeroes it. */
export function subkeyBytes(cek: Uint8Array, info: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', cek, NO_SALT, info, 32));
}

/** subkeyBytes as a KeyObject (a copy in native memory); the JS copy is zeroed. */
export function subkeyOf(cek: Uint8Array, info: Uint8Array): KeyObject {
  const okm = subkeyBytes(cek, info);
  try {
    return createSecretKey(okm);
  } finally {
    okm.fill(0);
  }
}

/** `label` ‖ context parts, each part u8-length-prefixed (a part is at most 255 bytes). */
export function subkeyInfo(label: string, parts: readonly (string | number)[]): Uint8Array {
  const chunks: Buffer[] = [Buffer.from(label, 'latin1')];
  for (const p of parts) {
    if (typeof p === 'number') {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(p >>> 0);
      chunks.push(b);
    } else {
      const b = Buffer.from(p, 'utf8');
      if (b.length > 255) throw new RangeError('subkey context part over 255 bytes');
      chunks.push(Buffer.from([b.length]), b);
    }
  }
  return Buffer.concat(chunks);
}

/** The subkey of one CEK version: a warm CEK is used in place, a cold one through a private copy. */
export async function cekSubkey(
  h: Hierarchy,
  t: TenantRow,
  customer: string,
  cekVersion: number,
  info: Uint8Array,
): Promise<KeyObject> {
  const raw = await cekSubkeyBytes(h, t, customer, cekVersion, info);
  try {
    return createSecretKey(raw);
  } finally {
    raw.fill(0);
  }
}

/** cekSubkey as bytes the caller owns and zeroes. */
export async function cekSubkeyBytes(
  h: Hierarchy,
  t: TenantRow,
  customer: string,
  cekVersion: number,
  info: Uint8Array,
): Promise<Uint8Array> {
  const hit = h.peekCek(t, customer, cekVersion);
  if (hit) return subkeyBytes(hit.expose(), info);
  const cek = await h.cekCopy(t, customer, cekVersion);
  try {
    return subkeyBytes(cek, info);
  } finally {
    cek.fill(0);
  }
}
