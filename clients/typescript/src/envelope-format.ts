/**
 * The local record format of encryptRecord (version 1). All lengths big-endian.
 *
 *   offset  size  field
 *   0       1     version = 0x01
 *   1       2     c = length of the key context
 *   3       c     key context (bound to the wrapped data key as GenerateDataKey's aad)
 *   3+c     2     w = length of the wrapped data key
 *   5+c     w     wrapped data key (GenerateDataKey's wrapped_key; names tenant, customer, version)
 *   5+c+w   12    AES-GCM nonce (random per record)
 *   17+c+w  n     AES-256-GCM ciphertext
 *   end-16  16    GCM tag
 *
 * The GCM additional data is every header byte (version through nonce) followed by the caller's
 * record AAD, so neither the header nor the AAD can change without the tag failing.
 */
export const ENVELOPE_VERSION = 1;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const MAX_FIELD = 0xffff;

export interface EnvelopeHeader {
  readonly keyContext: Buffer;
  readonly wrappedKey: Buffer;
  readonly nonce: Buffer;
}

/** The one error of every malformed or unauthentic record: which part failed is not said. */
export class EnvelopeError extends Error {
  constructor() {
    super('record could not be decrypted');
    this.name = 'EnvelopeError';
  }
}

export function encodeHeader(h: EnvelopeHeader): Buffer {
  if (h.keyContext.length > MAX_FIELD || h.wrappedKey.length > MAX_FIELD)
    throw new RangeError('key context and wrapped key are at most 65535 bytes');
  if (h.nonce.length !== NONCE_BYTES) throw new RangeError('nonce must be 12 bytes');
  const out = Buffer.alloc(5 + h.keyContext.length + h.wrappedKey.length + NONCE_BYTES);
  let o = out.writeUInt8(ENVELOPE_VERSION, 0);
  o = out.writeUInt16BE(h.keyContext.length, o);
  o += h.keyContext.copy(out, o);
  o = out.writeUInt16BE(h.wrappedKey.length, o);
  o += h.wrappedKey.copy(out, o);
  h.nonce.copy(out, o);
  return out;
}

/** Split a record into header fields, the header bytes (for the AAD) and ciphertext+tag. */
export function decodeRecord(record: Uint8Array): {
  header: EnvelopeHeader;
  headerBytes: Buffer;
  sealed: Buffer;
} {
  const b = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  if (b.length < 5 + NONCE_BYTES + TAG_BYTES || b[0] !== ENVELOPE_VERSION) throw new EnvelopeError();
  const c = b.readUInt16BE(1);
  if (b.length < 5 + c) throw new EnvelopeError();
  const w = b.readUInt16BE(3 + c);
  const headerLen = 5 + c + w + NONCE_BYTES;
  if (w === 0 || b.length < headerLen + TAG_BYTES) throw new EnvelopeError();
  return {
    header: {
      keyContext: b.subarray(3, 3 + c),
      wrappedKey: b.subarray(5 + c, 5 + c + w),
      nonce: b.subarray(5 + c + w, headerLen),
    },
    headerBytes: b.subarray(0, headerLen),
    sealed: b.subarray(headerLen),
  };
}
