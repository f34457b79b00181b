/**
 * Wrapping key material under a root key, in the token, with the profile's mechanism:
 *
 *   aes-kwp                  RFC 5649 output of CKM_AES_KEY_WRAP_PAD (n + 8..15 bytes)
 *   aes-cbc-pad-hmac-sha256  iv(16) ‖ CKM_AES_CBC_PAD(key) ‖ HMAC-SHA256(tag ‖ iv ‖ ct)(32)
 *                            (encrypt-then-MAC; tag = "keybroker/wrap/aes-cbc-pad-hmac-sha256/v1")
 *
 * The bytes to wrap enter the token as a scratch session object (C_CreateObject), since the root
 * key is not extractable and C_WrapKey only wraps objects; unwrap reads CKA_VALUE of a scratch
 * object. Scratch objects are destroyed at once, or die with their session.
 */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { decryptionFailed } from '../errors.ts';
import type { WrapMechanism } from './hsm.ts';
import type { HsmProfile } from './hsm-profile.ts';
import type { RootHandles } from './key-handles.ts';
import { call, callAsync } from './pkcs11-connection.ts';
import type { Pkcs11Connection, SessionCtx } from './pkcs11-connection.ts';
import { omit, scratchSecretTemplate, unwrapScratchTemplate } from './pkcs11-templates.ts';
import { HMAC_LEN, destroyScratch, hmacSign, hmacVerify } from './session-ops.ts';

const P = pkcs11js;
const CBC_IV = 16;
const CBC_HMAC_TAG = Buffer.from('keybroker/wrap/aes-cbc-pad-hmac-sha256/v1', 'utf8');

/** Key sizes a wrap may carry. */
export const WRAP_KEY_BYTES = { min: 16, max: 64 } as const;

/** False for blob lengths no wrap of 16-64 bytes can have (rejected before the HSM, same error). */
export function plausibleWrapLength(wrap: WrapMechanism, len: number): boolean {
  if (wrap === 'aes-kwp') return len >= 24 && len <= 72 && len % 8 === 0;
  return len >= 80 && len <= 128 && (len - CBC_IV - HMAC_LEN) % 16 === 0;
}

export async function wrapInToken(
  conn: Pkcs11Connection,
  profile: HsmProfile,
  s: SessionCtx,
  h: RootHandles,
  key: Uint8Array,
): Promise<Uint8Array> {
  const p = conn.pkcs11;
  const value = Buffer.from(key);
  const needPrivate = profile.quirks.sessionObjectsNeedPrivate ?? false;
  const tmp = call('C_CreateObject', () =>
    p.C_CreateObject(s.handle, scratchSecretTemplate(value, needPrivate)),
  );
  value.fill(0);
  try {
    const out = Buffer.alloc(key.length + 16);
    if (profile.wrap === 'aes-kwp') {
      const mech = { mechanism: P.CKM_AES_KEY_WRAP_PAD };
      return await callAsync('C_WrapKey', () => p.C_WrapKeyAsync(s.handle, mech, h.aes, tmp, out));
    }
    if (!h.hmac) throw decryptionFailed();
    const iv = randomBytes(CBC_IV);
    const mech = { mechanism: P.CKM_AES_CBC_PAD, parameter: iv };
    const ct = await callAsync('C_WrapKey', () => p.C_WrapKeyAsync(s.handle, mech, h.aes, tmp, out));
    const mac = await hmacSign(conn, s, h.hmac, Buffer.concat([CBC_HMAC_TAG, iv, ct]));
    return Buffer.concat([iv, ct, mac]);
  } finally {
    destroyScratch(conn, s, tmp);
  }
}

/** Unwrap into a scratch object and read its value; every failure is the caller's to map. */
export async function unwrapInToken(
  conn: Pkcs11Connection,
  profile: HsmProfile,
  s: SessionCtx,
  h: RootHandles,
  wrapped: Uint8Array,
): Promise<Uint8Array> {
  const p = conn.pkcs11;
  const blob = Buffer.from(wrapped);
  let mech: pkcs11js.Mechanism = { mechanism: P.CKM_AES_KEY_WRAP_PAD };
  let ct = blob;
  if (profile.wrap === 'aes-cbc-pad-hmac-sha256') {
    if (!h.hmac) throw decryptionFailed();
    const iv = blob.subarray(0, CBC_IV);
    ct = blob.subarray(CBC_IV, blob.length - HMAC_LEN);
    // The MAC is checked before anything reaches the CBC unwrap (no padding oracle).
    await hmacVerify(
      conn,
      s,
      h.hmac,
      Buffer.concat([CBC_HMAC_TAG, iv, ct]),
      blob.subarray(blob.length - HMAC_LEN),
    );
    mech = { mechanism: P.CKM_AES_CBC_PAD, parameter: Buffer.from(iv) };
  }
  const template = omit(unwrapScratchTemplate(undefined), profile.quirks.unwrapTemplateOmit);
  const tmp = await callAsync('C_UnwrapKey', () => p.C_UnwrapKeyAsync(s.handle, mech, h.aes, ct, template));
  try {
    const attrs = call('C_GetAttributeValue', () =>
      p.C_GetAttributeValue(s.handle, tmp, [{ type: P.CKA_VALUE }]),
    );
    const value = attrs[0]?.value;
    if (!value || value.length < WRAP_KEY_BYTES.min || value.length > WRAP_KEY_BYTES.max)
      throw decryptionFailed();
    return new Uint8Array(value.buffer, value.byteOffset, value.length);
  } finally {
    destroyScratch(conn, s, tmp);
  }
}
