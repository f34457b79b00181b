/**
 * Offline verification of shred receipts against a PINNED broker receipt key (review H2): the
 * public key inside a receipt proves nothing by itself, since anyone can sign a receipt with a
 * key of their own. The trusted key comes out of band: `receipt-key.pem` written by
 * `keybroker init`, Admin.GetBrokerKeys / `keybroker admin keys`, or the daemon's start log.
 *
 * Receipt bodies v2 also name the signer key's SHA-256 fingerprint, the broker instance and the
 * domain `keybroker.shred-receipt.v1`, all under the signature; v1 bodies (no such fields) still
 * verify against the pinned key.
 */
import { constants, createHash, createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { ShredReceipt } from './key-broker-api.ts';

/** Domain string inside every v2 receipt body (a receipt signature means nothing else). */
export const RECEIPT_DOMAIN = 'keybroker.shred-receipt.v1';

/** A pinned receipt key: its SPKI (PEM) or the SHA-256 of its SPKI DER (hex, colons allowed). */
export type TrustedReceiptKey = { readonly publicKeyPem: string } | { readonly sha256: string };

/** SHA-256 of a key's SPKI DER, lowercase hex: the receipt key's published fingerprint. */
export function spkiSha256(key: KeyObject | string): string {
  const k = typeof key === 'string' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(k.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** Why a receipt did not verify (for the CLI); `ok` only when signature, key and body all check. */
export interface ReceiptCheck {
  readonly ok: boolean;
  readonly reason?: string;
  readonly version?: number;
}

const fail = (reason: string): ReceiptCheck => ({ ok: false, reason });

/** Verify `r` against the pinned key `trusted`; never against the key inside `r` alone. */
export function checkShredReceipt(r: ShredReceipt, trusted: TrustedReceiptKey): ReceiptCheck {
  try {
    let key: KeyObject;
    if ('publicKeyPem' in trusted) {
      key = createPublicKey(trusted.publicKeyPem);
    } else {
      const want = trusted.sha256.replaceAll(':', '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(want)) return fail('the pinned fingerprint is not 64 hex digits');
      key = createPublicKey(r.publicKeyPem);
      if (spkiSha256(key) !== want) return fail('the receipt names a key other than the pinned one');
    }
    if (!signatureValid(r, key)) return fail('bad signature under the pinned key');
    const body = JSON.parse(r.body) as Record<string, unknown>;
    if (body.type !== 'keybroker.shred-receipt') return fail('not a shred receipt');
    if (body.v === 1) return { ok: true, version: 1 };
    if (body.v !== 2) return fail(`unknown receipt version ${String(body.v)}`);
    if (body.domain !== RECEIPT_DOMAIN) return fail('wrong domain string');
    if (body.signerKeySha256 !== spkiSha256(key)) return fail('the body names another signer key');
    if (typeof body.brokerInstance !== 'string' || body.brokerInstance === '')
      return fail('no broker instance');
    return { ok: true, version: 2 };
  } catch {
    return fail('malformed receipt or key');
  }
}

/** True only if `r` is a receipt signed by the pinned key `trusted` (see checkShredReceipt). */
export function verifyShredReceipt(r: ShredReceipt, trusted: TrustedReceiptKey): boolean {
  return checkShredReceipt(r, trusted).ok;
}

function signatureValid(r: ShredReceipt, key: KeyObject): boolean {
  const sig = Buffer.from(r.signature, 'base64');
  const body = Buffer.from(r.body, 'utf8');
  // The named algorithm must match the key, or a PSS label on an EC key would verify as ECDSA.
  const d = key.asymmetricKeyDetails;
  if (r.signatureAlgorithm === 'ecdsa-p256-sha256') {
    if (key.asymmetricKeyType !== 'ec' || d?.namedCurve !== 'prime256v1') return false;
    return verify('sha256', body, key, sig);
  }
  if (r.signatureAlgorithm === 'rsa-pss-sha256-3072') {
    if ((key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') || d?.modulusLength !== 3072)
      return false;
    return verify(
      'sha256',
      body,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      sig,
    );
  }
  return false;
}
