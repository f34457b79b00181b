/**
 * Read back the security attributes of a root key straight from the token, for `keybroker doctor`
 * and the integration tests: proof that the key is sensitive and was never extractable, and that
 * asking for its value fails.
 */
import pkcs11js from 'pkcs11js';
import { KbError } from '../errors.ts';
import { call } from './pkcs11-connection.ts';
import { Pkcs11Error } from './pkcs11-error.ts';
import type { Pkcs11Hsm } from './pkcs11-hsm.ts';
import { findTemplate } from './pkcs11-templates.ts';

const P = pkcs11js;

export interface KeySecurityAttributes {
  readonly token: boolean;
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly alwaysSensitive: boolean;
  readonly neverExtractable: boolean;
  /** The CKR code C_GetAttributeValue(CKA_VALUE) gave, or 'CKR_OK' if the value came back. */
  readonly valueRead: string;
}

/** Attributes of the root AES key (or, with `hmac`, its HMAC companion) labelled `label`. */
export async function inspectRootKey(
  hsm: Pkcs11Hsm,
  label: string,
  hmac = false,
): Promise<KeySecurityAttributes> {
  const conn = hsm.connection;
  return conn.withSession(async (s) => {
    const p = conn.pkcs11;
    const template = findTemplate(label, P.CKO_SECRET_KEY, hmac ? P.CKK_GENERIC_SECRET : P.CKK_AES);
    call('C_FindObjectsInit', () => p.C_FindObjectsInit(s.handle, template));
    let found: Buffer[];
    try {
      found = call('C_FindObjects', () => p.C_FindObjects(s.handle, 2));
    } finally {
      call('C_FindObjectsFinal', () => p.C_FindObjectsFinal(s.handle));
    }
    const obj = found[0];
    if (!obj) throw new KbError('NOT_FOUND', 'root key');
    const types = [
      P.CKA_TOKEN,
      P.CKA_SENSITIVE,
      P.CKA_EXTRACTABLE,
      P.CKA_ALWAYS_SENSITIVE,
      P.CKA_NEVER_EXTRACTABLE,
    ];
    const attrs = call('C_GetAttributeValue', () =>
      p.C_GetAttributeValue(
        s.handle,
        obj,
        types.map((type) => ({ type })),
      ),
    );
    const flag = (i: number) => (attrs[i]?.value?.[0] ?? 0) !== 0;
    let valueRead = 'CKR_OK';
    try {
      const v = p.C_GetAttributeValue(s.handle, obj, [{ type: P.CKA_VALUE }]);
      v[0]?.value?.fill(0);
    } catch (err) {
      const e =
        err instanceof pkcs11js.Pkcs11Error
          ? new Pkcs11Error(err.message, err.code, 'C_GetAttributeValue')
          : err;
      valueRead = e instanceof Pkcs11Error ? e.ckr : String(e);
    }
    return {
      token: flag(0),
      sensitive: flag(1),
      extractable: flag(2),
      alwaysSensitive: flag(3),
      neverExtractable: flag(4),
      valueRead,
    };
  });
}
