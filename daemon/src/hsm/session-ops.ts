/**
 * Small PKCS#11 steps shared by the operations: ending an operation left active by an error,
 * destroying scratch objects, HMAC-SHA256 sign/verify in the token.
 */
import pkcs11js from 'pkcs11js';
import { decryptionFailed } from '../errors.ts';
import { call, callAsync } from './pkcs11-connection.ts';
import type { Pkcs11Connection, SessionCtx } from './pkcs11-connection.ts';
import { Pkcs11Error, toPkcs11Error } from './pkcs11-error.ts';

const P = pkcs11js;
export const HMAC_LEN = 32;

/**
 * Close an operation an error may have left active (Init succeeded, the call did not finish it).
 * Per PKCS#11 most failures already ended it (the Final then says OPERATION_NOT_INITIALIZED); if
 * the Final fails any other way the session is replaced, so no stale operation survives.
 */
export function endOperation(
  conn: Pkcs11Connection,
  s: SessionCtx,
  op: 'encrypt' | 'decrypt' | 'sign' | 'verify',
): void {
  const p = conn.pkcs11;
  const scratch = Buffer.alloc(1024);
  try {
    if (op === 'encrypt') p.C_EncryptFinal(s.handle, scratch);
    else if (op === 'decrypt') p.C_DecryptFinal(s.handle, scratch);
    else if (op === 'sign') p.C_SignFinal(s.handle, scratch);
    else p.C_VerifyFinal(s.handle, scratch.subarray(0, HMAC_LEN));
  } catch (err) {
    const e = toPkcs11Error(err, `C_${op[0]?.toUpperCase()}${op.slice(1)}Final`);
    if (!(e instanceof Pkcs11Error && e.ckr === 'CKR_OPERATION_NOT_INITIALIZED')) s.poisoned = true;
  }
}

/** Destroy a scratch session object; if that fails, replace the session (which destroys it). */
export function destroyScratch(conn: Pkcs11Connection, s: SessionCtx, obj: Buffer): void {
  try {
    conn.pkcs11.C_DestroyObject(s.handle, obj);
  } catch {
    // A session object dies with its session: replacing the session destroys it for sure.
    s.poisoned = true;
  }
}

/** HMAC-SHA256 of `data` under the token key `key`. */
export async function hmacSign(
  conn: Pkcs11Connection,
  s: SessionCtx,
  key: Buffer,
  data: Buffer,
): Promise<Buffer> {
  const p = conn.pkcs11;
  call('C_SignInit', () => p.C_SignInit(s.handle, { mechanism: P.CKM_SHA256_HMAC }, key));
  try {
    return await callAsync('C_Sign', () => p.C_SignAsync(s.handle, data, Buffer.alloc(HMAC_LEN)));
  } catch (err) {
    endOperation(conn, s, 'sign');
    throw err;
  }
}

/** Verify an HMAC-SHA256 inside the token (constant time there); a mismatch is DECRYPTION_FAILED. */
export async function hmacVerify(
  conn: Pkcs11Connection,
  s: SessionCtx,
  key: Buffer,
  data: Buffer,
  mac: Buffer,
): Promise<void> {
  const p = conn.pkcs11;
  call('C_VerifyInit', () => p.C_VerifyInit(s.handle, { mechanism: P.CKM_SHA256_HMAC }, key));
  let ok: boolean;
  try {
    ok = await callAsync('C_Verify', () => p.C_VerifyAsync(s.handle, data, Buffer.from(mac)));
  } catch (err) {
    endOperation(conn, s, 'verify');
    throw err;
  }
  if (!ok) throw decryptionFailed();
}
