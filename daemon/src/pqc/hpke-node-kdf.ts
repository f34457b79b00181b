/**
 * HKDF-SHA256 for @hpke/core computed with Node's synchronous HMAC (OpenSSL) instead of
 * WebCrypto. The HPKE key schedule makes about a dozen HMAC calls; through crypto.subtle each is
 * an async thread-pool round trip (hundreds of µs on a busy 2-core host), through createHmac a
 * few µs. Only the HMAC primitive changes: labels, suite id and lengths stay @hpke/core's
 * (we subclass its HkdfSha256), and the RFC 9180 / HPKE-PQ vector tests run through this class.
 * Keys go to createHmac/hkdfSync as KeyObjects: given raw bytes, Node first probes them with two
 * thrown and caught internal errors, which cost about three times the HMAC itself.
 */
import { createHmac, createSecretKey, hkdfSync } from 'node:crypto';
import { HkdfSha256 } from '@hpke/core';

const HASH = 32;

function bytes(b: ArrayBufferLike | ArrayBufferView): Uint8Array {
  return ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b);
}

function ab(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export class NodeHkdfSha256 extends HkdfSha256 {
  /** RFC 5869 §2.2; an empty salt is HashLen zero bytes, as in @hpke/core. */
  override extract(
    salt: ArrayBufferLike | ArrayBufferView,
    ikm: ArrayBufferLike | ArrayBufferView,
  ): Promise<ArrayBuffer> {
    const s = bytes(salt);
    if (s.length !== 0 && s.length !== HASH)
      return Promise.reject(new Error('The salt length must be the same as the hashSize'));
    const mac = createHmac('sha256', createSecretKey(s.length === 0 ? new Uint8Array(HASH) : s))
      .update(bytes(ikm))
      .digest();
    return Promise.resolve(ab(mac));
  }

  /** RFC 5869 §2.3: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i). */
  override expand(
    prk: ArrayBufferLike | ArrayBufferView,
    info: ArrayBufferLike | ArrayBufferView,
    len: number,
  ): Promise<ArrayBuffer> {
    if (len > 255 * HASH) return Promise.reject(new Error('Entropy limit reached'));
    const key = createSecretKey(bytes(prk));
    const inf = bytes(info);
    const out = new Uint8Array(len);
    let prev = new Uint8Array(0);
    for (let i = 1, off = 0; off < len; i++) {
      prev = new Uint8Array(
        createHmac('sha256', key).update(prev).update(inf).update(Uint8Array.of(i)).digest(),
      );
      out.set(prev.subarray(0, Math.min(HASH, len - off)), off);
      off += HASH;
    }
    return Promise.resolve(out.buffer);
  }

  override extractAndExpand(
    salt: ArrayBufferLike | ArrayBufferView,
    ikm: ArrayBufferLike | ArrayBufferView,
    info: ArrayBufferLike | ArrayBufferView,
    len: number,
  ): Promise<ArrayBuffer> {
    return Promise.resolve(hkdfSync('sha256', createSecretKey(bytes(ikm)), bytes(salt), bytes(info), len));
  }
}
