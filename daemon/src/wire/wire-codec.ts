/**
 * Byte-level helpers shared by the v1 formats: bounded length-prefixed names, big-endian integers
 * and a bounds-checked reader whose every failure is the one opaque decrypt error.
 */
import { decryptionFailed } from '../errors.ts';

/** Names (org, tenant, customer) are 1..63 bytes (ids.ts); one length byte is enough. */
export const MAX_NAME_BYTES = 63;

const utf8 = new TextEncoder();
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** `u8 len ‖ bytes` for a name; the caller has validated the name already (ids.ts). */
export function lpName(name: string): Uint8Array {
  const b = utf8.encode(name);
  if (b.length < 1 || b.length > MAX_NAME_BYTES) throw new RangeError('name length out of bounds');
  const out = new Uint8Array(1 + b.length);
  out[0] = b.length;
  out.set(b, 1);
  return out;
}

export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0, false);
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `u32 len ‖ bytes` so that adjacent variable fields cannot trade bytes. */
export function lp32(b: Uint8Array): Uint8Array {
  return concat([u32(b.length), b]);
}

export function ascii(s: string): Uint8Array {
  return utf8.encode(s);
}

/** Sequential reader over untrusted bytes; any overrun or bad field throws decryptionFailed(). */
export class WireReader {
  readonly #b: Uint8Array;
  #o = 0;

  constructor(bytes: Uint8Array) {
    this.#b = bytes;
  }

  get offset(): number {
    return this.#o;
  }

  get remaining(): number {
    return this.#b.length - this.#o;
  }

  u8(): number {
    if (this.#o + 1 > this.#b.length) throw decryptionFailed();
    return this.#b[this.#o++] as number;
  }

  u32(): number {
    if (this.#o + 4 > this.#b.length) throw decryptionFailed();
    const b = this.#b;
    const o = this.#o;
    const v =
      (((b[o] as number) << 24) |
        ((b[o + 1] as number) << 16) |
        ((b[o + 2] as number) << 8) |
        (b[o + 3] as number)) >>>
      0;
    this.#o += 4;
    return v;
  }

  bytes(n: number): Uint8Array {
    if (n < 0 || this.#o + n > this.#b.length) throw decryptionFailed();
    const v = this.#b.subarray(this.#o, this.#o + n);
    this.#o += n;
    return v;
  }

  /** A length-prefixed name, checked against the same grammar ids.ts enforces (ASCII only). */
  name(): string {
    const n = this.u8();
    if (n < 1 || n > MAX_NAME_BYTES) throw decryptionFailed();
    const b = this.bytes(n);
    // latin1 maps every byte to one char; the grammar then admits only [a-z0-9_-].
    const s = Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
    if (!NAME.test(s)) throw decryptionFailed();
    return s;
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }
}
