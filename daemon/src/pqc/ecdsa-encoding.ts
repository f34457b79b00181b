/**
 * ECDSA signature encodings: IEEE P1363 (r ‖ s, fixed width) and X9.62 Ecdsa-Sig-Value DER
 * (SEQUENCE { INTEGER r, INTEGER s }). HSMs return r ‖ s; X.509 and composite signatures use DER.
 */
import { KbError } from '../errors.ts';
import { TAG, readTlv, tlv } from './pqc-der.ts';

function derInteger(unsigned: Uint8Array): Uint8Array {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  const v = unsigned.subarray(i);
  return (v[0] ?? 0) & 0x80 ? tlv(TAG.INTEGER, Uint8Array.of(0), v) : tlv(TAG.INTEGER, v);
}

/** r ‖ s (2 × 32 bytes for P-256) to DER. */
export function ecdsaP1363ToDer(sig: Uint8Array, fieldBytes = 32): Uint8Array {
  if (sig.length !== 2 * fieldBytes)
    throw new KbError('INVALID_ARGUMENT', `signature must be ${2 * fieldBytes} bytes`);
  return tlv(TAG.SEQUENCE, derInteger(sig.subarray(0, fieldBytes)), derInteger(sig.subarray(fieldBytes)));
}

/** True when `sig` is exactly one DER SEQUENCE of two INTEGERs. */
export function isDerEcdsaSignature(sig: Uint8Array): boolean {
  try {
    const seq = readTlv(sig, 0);
    if (seq.tag !== TAG.SEQUENCE || seq.end !== sig.length) return false;
    const r = readTlv(sig, seq.start);
    const s = readTlv(sig, r.end);
    return r.tag === TAG.INTEGER && s.tag === TAG.INTEGER && s.end === seq.end;
  } catch {
    // Not parseable as DER: the caller treats it as r ‖ s.
    return false;
  }
}

/** DER as is; a 64-byte r ‖ s (what PKCS#11 CKM_ECDSA returns) converted to DER. */
export function toDerEcdsaSignature(sig: Uint8Array): Uint8Array {
  if (isDerEcdsaSignature(sig)) return sig;
  if (sig.length === 64) return ecdsaP1363ToDer(sig);
  throw new KbError('INVALID_ARGUMENT', 'signature is neither DER nor 64-byte r ‖ s');
}
