/**
 * AES-256-GCM for @hpke/core on node:crypto (OpenSSL, synchronous) instead of WebCrypto, for the
 * same reason as hpke-node-kdf.ts: each crypto.subtle call is an async thread-pool hop. Nonce
 * handling stays @hpke/core's (base_nonce XOR sequence number); this only seals and opens.
 * Tested through the HPKE vector and round-trip tests; Wycheproof AES-GCM covers the primitive.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import { Aes256Gcm, type AeadInterface } from '@hpke/core';

type AeadContext = ReturnType<AeadInterface['createEncryptionContext']>;
const TAG = 16;

function bytes(b: ArrayBufferLike | ArrayBufferView): Uint8Array {
  return ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b);
}

export class NodeAes256Gcm extends Aes256Gcm {
  override createEncryptionContext(key: ArrayBufferLike | ArrayBufferView): AeadContext {
    const raw = bytes(key);
    if (raw.length !== 32) throw new Error('AES-256-GCM key must be 32 bytes');
    // A KeyObject (a copy): raw key bytes cost Node two caught exceptions per cipher (hpke-node-kdf.ts).
    const k = createSecretKey(raw);
    return {
      seal: (iv, data, aad) => {
        const c = createCipheriv('aes-256-gcm', k, bytes(iv));
        c.setAAD(bytes(aad));
        const out = Buffer.concat([c.update(bytes(data)), c.final(), c.getAuthTag()]);
        return Promise.resolve(
          out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength) as ArrayBuffer,
        );
      },
      open: (iv, data, aad) => {
        try {
          const d = bytes(data);
          if (d.length < TAG) throw new Error('ciphertext shorter than the tag');
          const dec = createDecipheriv('aes-256-gcm', k, bytes(iv));
          dec.setAAD(bytes(aad));
          dec.setAuthTag(d.subarray(d.length - TAG));
          const out = Buffer.concat([dec.update(d.subarray(0, d.length - TAG)), dec.final()]);
          return Promise.resolve(
            out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength) as ArrayBuffer,
          );
        } catch (err) {
          return Promise.reject(err);
        }
      },
    };
  }
}
