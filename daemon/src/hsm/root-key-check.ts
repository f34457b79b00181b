/**
 * The security attributes of a root key found in the token, checked once per key at first use
 * (review L3): whoever can write objects into the token could plant a key under the OEK's label,
 * and the broker would otherwise wrap every TEK under it. Refused: a key that is not sensitive,
 * is extractable, or was ever extractable. Accepted with a warning: CKA_ENCRYPT/CKA_DECRYPT on an
 * AES root (OEKs made before the tighter template had them whenever the profile had AES-GCM;
 * they expose no key bytes, and the next OEK version, e.g. after a shred epoch, is made without).
 */
import pkcs11js from 'pkcs11js';
import { KbError } from '../errors.ts';
import { call, type Pkcs11Connection, type SessionCtx } from './pkcs11-connection.ts';

const P = pkcs11js;

export interface RootKeyVerdict {
  /** Attributes that make the key unusable (empty: usable). */
  readonly refused: readonly string[];
  /** Attributes tolerated on keys made by older brokers (logged as a warning). */
  readonly legacy: readonly string[];
}

/** Read and judge the attributes of one root-key object (`aes`: the AES key, else the HMAC companion). */
export function judgeRootKey(
  conn: Pkcs11Connection,
  s: SessionCtx,
  obj: Buffer,
  aes: boolean,
): RootKeyVerdict {
  const types = [P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_NEVER_EXTRACTABLE, P.CKA_ENCRYPT, P.CKA_DECRYPT];
  const attrs = call('C_GetAttributeValue', () =>
    conn.pkcs11.C_GetAttributeValue(
      s.handle,
      obj,
      types.map((type) => ({ type })),
    ),
  );
  const flag = (i: number): boolean => (attrs[i]?.value?.[0] ?? 0) !== 0;
  const refused = [
    flag(0) ? '' : 'CKA_SENSITIVE is false',
    flag(1) ? 'CKA_EXTRACTABLE is true' : '',
    flag(2) ? '' : 'CKA_NEVER_EXTRACTABLE is false',
    // The HMAC companion never encrypts; an AES root's encrypt/decrypt is the legacy case below.
    !aes && (flag(3) || flag(4)) ? 'CKA_ENCRYPT/CKA_DECRYPT on the HMAC key' : '',
  ].filter(Boolean);
  const legacy = aes
    ? [flag(3) ? 'CKA_ENCRYPT is true' : '', flag(4) ? 'CKA_DECRYPT is true' : ''].filter(Boolean)
    : [];
  return { refused, legacy };
}

/** The error for a refused root key: names the attributes (the label goes to the log only). */
export function rootKeyRefused(label: string, refused: readonly string[]): KbError {
  return new KbError('HSM_KEY_REFUSED', refused.join(', '), { detail: `root key ${label}` });
}
