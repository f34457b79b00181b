/**
 * Encodings between PKCS#11 attribute values and what Node's crypto expects: ECDSA r‖s -> DER,
 * CKA_EC_POINT / RSA modulus+exponent -> SubjectPublicKeyInfo DER.
 */
import { createPublicKey } from 'node:crypto';

/** DER of the prime256v1 OID, the CKA_EC_PARAMS of a P-256 key. */
export const P256_EC_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

function derInteger(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let body = Buffer.from(bytes.subarray(i));
  // A set top bit would read as negative: prefix a zero byte.
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.of(0), body]);
  return Buffer.concat([Buffer.of(0x02, body.length), body]);
}

/** PKCS#11 returns ECDSA signatures as raw r‖s; X.509 and Node's default want DER SEQUENCE{r,s}. */
export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0 || raw.length > 132) {
    throw new Error(`ECDSA signature of ${raw.length} bytes is not r||s`);
  }
  const half = raw.length / 2;
  const body = Buffer.concat([derInteger(raw.subarray(0, half)), derInteger(raw.subarray(half))]);
  // P-521 signatures need the long length form.
  const len = body.length < 0x80 ? Buffer.of(body.length) : Buffer.of(0x81, body.length);
  return Buffer.concat([Buffer.of(0x30), len, body]);
}

/**
 * CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (SoftHSM, most HSMs); a few
 * modules return the bare point. Accept both.
 */
export function ecPointToSpki(ecPoint: Uint8Array): Buffer {
  let point = ecPoint;
  if (point.length === 67 && point[0] === 0x04 && point[1] === 0x41) point = point.subarray(2);
  if (point.length !== 65 || point[0] !== 0x04)
    throw new Error('CKA_EC_POINT is not an uncompressed P-256 point');
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');
  const key = createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64(point.subarray(1, 33)), y: b64(point.subarray(33, 65)) },
    format: 'jwk',
  });
  return key.export({ type: 'spki', format: 'der' });
}

/** RSA public key from CKA_MODULUS and CKA_PUBLIC_EXPONENT. */
export function rsaToSpki(modulus: Uint8Array, exponent: Uint8Array): Buffer {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');
  const key = createPublicKey({ key: { kty: 'RSA', n: b64(modulus), e: b64(exponent) }, format: 'jwk' });
  return key.export({ type: 'spki', format: 'der' });
}
