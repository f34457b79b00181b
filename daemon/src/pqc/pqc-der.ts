/**
 * Just enough DER for PKCS#8 and SubjectPublicKeyInfo of ML-KEM / ML-DSA keys
 * (RFC 5958, RFC 5280; private-key CHOICE of draft-ietf-lamps-kyber-certificates and RFC 9881):
 *
 *   PrivateKeyInfo ::= SEQUENCE { version INTEGER 0, alg SEQUENCE { OID }, privateKey OCTET STRING }
 *   privateKey     ::= CHOICE { seed [0] IMPLICIT OCTET STRING, expandedKey OCTET STRING,
 *                               both SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING } }
 *   SPKI           ::= SEQUENCE { alg SEQUENCE { OID }, subjectPublicKey BIT STRING }
 *
 * Parsing is strict (definite lengths, no trailing bytes) and throws plain Errors; callers map
 * them to their own KbError.
 */

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  SEQUENCE: 0x30,
  SEED: 0x80,
} as const;

function encodeLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** tag ‖ length ‖ content. */
export function tlv(tag: number, ...content: Uint8Array[]): Uint8Array {
  const len = content.reduce((a, c) => a + c.length, 0);
  const head = encodeLength(len);
  const out = new Uint8Array(1 + head.length + len);
  out[0] = tag;
  out.set(head, 1);
  let off = 1 + head.length;
  for (const c of content) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** DER encoding of a dotted object identifier (content + tag). */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map(Number);
  const [a = 0, b = 0, ...rest] = arcs;
  const body: number[] = [a * 40 + b];
  for (const arc of rest) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    body.push(...chunk);
  }
  return tlv(TAG.OID, Uint8Array.from(body));
}

export interface Tlv {
  readonly tag: number;
  /** Content start and end offsets within the parsed buffer. */
  readonly start: number;
  readonly end: number;
}

/** Read one TLV at `offset`; throws on truncation or non-minimal / indefinite lengths. */
export function readTlv(buf: Uint8Array, offset: number): Tlv {
  const tag = buf[offset];
  const first = buf[offset + 1];
  if (tag === undefined || first === undefined) throw new Error('DER: truncated header');
  let len = first;
  let pos = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length form');
    len = 0;
    for (let i = 0; i < n; i++) {
      const b = buf[pos + i];
      if (b === undefined) throw new Error('DER: truncated length');
      len = len * 256 + b;
    }
    if (len < 0x80 || (n > 1 && len < 256 ** (n - 1))) throw new Error('DER: non-minimal length');
    pos += n;
  }
  if (pos + len > buf.length) throw new Error('DER: truncated content');
  return { tag, start: pos, end: pos + len };
}

function expect(buf: Uint8Array, offset: number, tag: number): Tlv {
  const t = readTlv(buf, offset);
  if (t.tag !== tag) throw new Error(`DER: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  return t;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** PKCS#8 PrivateKeyInfo for `oidDotted` carrying `privateKeyChoice` (already DER, e.g. tlv(0x04, sk)). */
export function pkcs8(oidDotted: string, privateKeyChoice: Uint8Array): Uint8Array {
  return tlv(
    TAG.SEQUENCE,
    Uint8Array.of(TAG.INTEGER, 1, 0),
    tlv(TAG.SEQUENCE, oid(oidDotted)),
    tlv(TAG.OCTET_STRING, privateKeyChoice),
  );
}

/** SubjectPublicKeyInfo for `oidDotted` with the raw public key. */
export function spki(oidDotted: string, publicKey: Uint8Array): Uint8Array {
  return tlv(
    TAG.SEQUENCE,
    tlv(TAG.SEQUENCE, oid(oidDotted)),
    tlv(TAG.BIT_STRING, Uint8Array.of(0), publicKey),
  );
}

/** The raw public key inside an SPKI whose algorithm is `oidDotted` (no parameters). */
export function parseSpki(der: Uint8Array, oidDotted: string): Uint8Array {
  const outer = expect(der, 0, TAG.SEQUENCE);
  if (outer.end !== der.length) throw new Error('DER: trailing bytes');
  const alg = expect(der, outer.start, TAG.SEQUENCE);
  if (!sameBytes(der.subarray(alg.start, alg.end), oid(oidDotted)))
    throw new Error('SPKI: unexpected algorithm');
  const bits = expect(der, alg.end, TAG.BIT_STRING);
  if (bits.end !== outer.end || der[bits.start] !== 0) throw new Error('SPKI: malformed BIT STRING');
  return der.subarray(bits.start + 1, bits.end);
}

/** Seed and/or expanded key from an ML-KEM / ML-DSA PKCS#8 (any of the three CHOICE forms). */
export function parsePqcPkcs8(
  der: Uint8Array,
  oidDotted: string,
): { seed: Uint8Array | undefined; expanded: Uint8Array | undefined } {
  const outer = expect(der, 0, TAG.SEQUENCE);
  if (outer.end !== der.length) throw new Error('DER: trailing bytes');
  const version = expect(der, outer.start, TAG.INTEGER);
  const alg = expect(der, version.end, TAG.SEQUENCE);
  if (!sameBytes(der.subarray(alg.start, alg.end), oid(oidDotted)))
    throw new Error('PKCS#8: unexpected algorithm');
  const wrapper = expect(der, alg.end, TAG.OCTET_STRING);
  const choice = readTlv(der, wrapper.start);
  if (choice.end !== wrapper.end) throw new Error('PKCS#8: trailing bytes in privateKey');
  if (choice.tag === TAG.SEED) return { seed: der.subarray(choice.start, choice.end), expanded: undefined };
  if (choice.tag === TAG.OCTET_STRING)
    return { seed: undefined, expanded: der.subarray(choice.start, choice.end) };
  if (choice.tag === TAG.SEQUENCE) {
    const s = expect(der, choice.start, TAG.OCTET_STRING);
    const e = expect(der, s.end, TAG.OCTET_STRING);
    if (e.end !== choice.end) throw new Error('PKCS#8: trailing bytes in both');
    return { seed: der.subarray(s.start, s.end), expanded: der.subarray(e.start, e.end) };
  }
  throw new Error('PKCS#8: unknown privateKey form');
}
