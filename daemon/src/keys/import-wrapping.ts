/**
 * The wrapping of a key import (bring your own key). A job has a one-time key pair; the importer
 * wraps the private key to import as one blob:
 *
 *   ml-kem-768-aes-kwp:            ML-KEM-768 ciphertext (1088 B) ‖ AES-256-KWP(KEK, key)
 *       KEK = HKDF-SHA256(ikm = shared secret, salt = empty, info = importKdfInfo(...), 32)
 *   rsa-oaep-3072-sha256-aes-kwp:  RSA-OAEP-3072 (SHA-256, MGF1-SHA-256, empty label) of an
 *       ephemeral AES-256 key (384 B) ‖ AES-256-KWP(that key, key)   (the cloud KMS import layout)
 *
 * AES-KWP is RFC 5649 (OpenSSL `id-aes256-wrap-pad`). Every failure to open is the one opaque
 * DECRYPTION_FAILED: which part was wrong is not told.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  decapsulate,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
} from 'node:crypto';
import { decryptionFailed } from '../errors.ts';
import type { ImportWrapping } from '../store/import-job-rows.ts';
import { subkeyInfo } from './cek-subkey.ts';

export const IMPORT_WRAPPINGS: readonly ImportWrapping[] = [
  'ml-kem-768-aes-kwp',
  'rsa-oaep-3072-sha256-aes-kwp',
];
const KWP_IV = Buffer.from('a65959a6', 'hex');
const KEM_CT_BYTES = 1088;
const RSA_CT_BYTES = 384;
/** The HKDF label of an ML-KEM import KEK; never reused for another purpose. */
export const IMPORT_KDF_LABEL = 'keybroker import v1';

/** What the job binds: the importer's KEK is derived over all of it. */
export interface ImportJobBinding {
  readonly jobId: string;
  readonly org: string;
  readonly tenant: string;
  readonly customer: string;
  readonly keyId: string;
  readonly alg: string;
}

/** HKDF info: the label, then job id, org, tenant, customer ('' for none), key id, algorithm, each u8-length-prefixed. */
export function importKdfInfo(b: ImportJobBinding): Uint8Array {
  return subkeyInfo(IMPORT_KDF_LABEL, [b.jobId, b.org, b.tenant, b.customer, b.keyId, b.alg]);
}

/** A new job key pair: the private key to store wrapped, the public key to hand out. */
export function newImportKeyPair(w: ImportWrapping): { secret: Uint8Array; publicKey: Uint8Array } {
  if (w === 'ml-kem-768-aes-kwp') {
    const kp = generateKeyPairSync('ml-kem-768');
    return {
      secret: new Uint8Array(kp.privateKey.export({ format: 'raw-seed' })),
      publicKey: new Uint8Array(kp.publicKey.export({ format: 'raw-public' })),
    };
  }
  const kp = generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 0x10001 });
  return {
    secret: new Uint8Array(kp.privateKey.export({ format: 'der', type: 'pkcs8' })),
    publicKey: new Uint8Array(kp.publicKey.export({ format: 'der', type: 'spki' })),
  };
}

function kwpUnwrap(kek: Uint8Array, wrapped: Uint8Array): Uint8Array {
  // RFC 5649: at least one 64-bit block of data plus the integrity block, whole blocks only.
  if (wrapped.length < 16 || wrapped.length % 8 !== 0) throw decryptionFailed();
  const d = createDecipheriv('id-aes256-wrap-pad', kek, KWP_IV);
  return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
}

/** AES-256-KWP (RFC 5649), for importers written against this module (tests, the CLI). */
export function kwpWrap(kek: Uint8Array, key: Uint8Array): Uint8Array {
  const c = createCipheriv('id-aes256-wrap-pad', kek, KWP_IV);
  return new Uint8Array(Buffer.concat([c.update(key), c.final()]));
}

/** Open an import blob with the job's private key (`secret`, not consumed). */
export function unwrapImport(
  w: ImportWrapping,
  secret: Uint8Array,
  binding: ImportJobBinding,
  blob: Uint8Array,
): Uint8Array {
  let kek: Uint8Array | undefined;
  try {
    if (w === 'ml-kem-768-aes-kwp') {
      if (blob.length <= KEM_CT_BYTES) throw decryptionFailed();
      const sk = createPrivateKey({
        key: Buffer.from(secret),
        format: 'raw-seed',
        asymmetricKeyType: 'ml-kem-768',
      });
      const ss = decapsulate(sk, blob.subarray(0, KEM_CT_BYTES));
      try {
        kek = new Uint8Array(hkdfSync('sha256', ss, new Uint8Array(0), importKdfInfo(binding), 32));
      } finally {
        ss.fill(0);
      }
      return kwpUnwrap(kek, blob.subarray(KEM_CT_BYTES));
    }
    if (blob.length <= RSA_CT_BYTES) throw decryptionFailed();
    const sk = createPrivateKey({ key: Buffer.from(secret), format: 'der', type: 'pkcs8' });
    kek = new Uint8Array(
      privateDecrypt(
        { key: sk, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        blob.subarray(0, RSA_CT_BYTES),
      ),
    );
    if (kek.length !== 32) throw decryptionFailed();
    return kwpUnwrap(kek, blob.subarray(RSA_CT_BYTES));
  } catch (err) {
    throw decryptionFailed(err);
  } finally {
    kek?.fill(0);
  }
}
