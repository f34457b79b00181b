/**
 * An outside key importer for the key-import tests, written without the broker's code: key
 * material from @noble/post-quantum (NIST seeds and expanded keys), PKCS#8 DER built by hand
 * (draft-ietf-lamps-kyber-certificates / dilithium-certificates: seed, expandedKey or both),
 * and the wrapping an external tool does (ML-KEM-768 via noble + HKDF + AES-KWP, or RSA-OAEP).
 */
import {
  constants,
  createCipheriv,
  createPublicKey,
  hkdfSync,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024, ml_kem768 } from '@noble/post-quantum/ml-kem.js';

export type ImportAlg =
  'ml-kem-768' | 'ml-kem-1024' | 'ml-dsa-44' | 'ml-dsa-65' | 'ml-dsa-87' | 'x-wing' | 'ed25519';

const OID: Record<string, string> = {
  'ml-kem-768': '2.16.840.1.101.3.4.4.2',
  'ml-kem-1024': '2.16.840.1.101.3.4.4.3',
  'ml-dsa-44': '2.16.840.1.101.3.4.3.17',
  'ml-dsa-65': '2.16.840.1.101.3.4.3.18',
  'ml-dsa-87': '2.16.840.1.101.3.4.3.19',
};

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}
const tlv = (tag: number, body: Uint8Array) => Buffer.concat([Buffer.from([tag]), len(body.length), body]);
function oid(dotted: string): Buffer {
  const p = dotted.split('.').map(Number);
  const out = [40 * (p[0] as number) + (p[1] as number)];
  for (const v of p.slice(2)) {
    const b: number[] = [];
    let x = v;
    b.unshift(x & 0x7f);
    while ((x >>= 7) > 0) b.unshift((x & 0x7f) | 0x80);
    out.push(...b);
  }
  return tlv(0x06, Uint8Array.from(out));
}

export type Pkcs8Form = 'seed' | 'expanded' | 'both';

/** PrivateKeyInfo of an ML-KEM / ML-DSA key in one of the three CHOICE forms. */
export function pkcs8(alg: string, form: Pkcs8Form, seed: Uint8Array, expanded: Uint8Array): Buffer {
  const inner =
    form === 'seed'
      ? tlv(0x80, seed)
      : form === 'expanded'
        ? tlv(0x04, expanded)
        : tlv(0x30, Buffer.concat([tlv(0x04, seed), tlv(0x04, expanded)]));
  return tlv(
    0x30,
    Buffer.concat([tlv(0x02, Uint8Array.of(0)), tlv(0x30, oid(OID[alg] as string)), tlv(0x04, inner)]),
  );
}

/** Ed25519 PKCS#8 (RFC 8410): a fixed prefix, then the 32-byte seed. */
export const ed25519Pkcs8 = (seed: Uint8Array): Buffer =>
  Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);

export interface ExternalKey {
  readonly seed: Uint8Array;
  /** NIST expanded private key (ML-KEM dk / ML-DSA sk); undefined for X-Wing and Ed25519. */
  readonly expanded: Uint8Array | undefined;
  readonly publicKey: Uint8Array;
}

/** A fresh key of `alg`, made by @noble (Ed25519: by Node from its PKCS#8). */
export function externalKey(alg: ImportAlg, publicOfEd25519: (seed: Uint8Array) => Uint8Array): ExternalKey {
  switch (alg) {
    case 'ml-kem-768':
    case 'ml-kem-1024': {
      const seed = randomBytes(64);
      const k = (alg === 'ml-kem-768' ? ml_kem768 : ml_kem1024).keygen(seed);
      return { seed, expanded: k.secretKey, publicKey: k.publicKey };
    }
    case 'ml-dsa-44':
    case 'ml-dsa-65':
    case 'ml-dsa-87': {
      const seed = randomBytes(32);
      const k = { 'ml-dsa-44': ml_dsa44, 'ml-dsa-65': ml_dsa65, 'ml-dsa-87': ml_dsa87 }[alg].keygen(seed);
      return { seed, expanded: k.secretKey, publicKey: k.publicKey };
    }
    case 'x-wing': {
      const seed = randomBytes(32);
      return { seed, expanded: undefined, publicKey: ml_kem768_x25519.keygen(seed).publicKey };
    }
    case 'ed25519': {
      const seed = randomBytes(32);
      return { seed, expanded: undefined, publicKey: publicOfEd25519(seed) };
    }
  }
}

/** u8-length-prefixed parts after the label, as the broker documents for kdf_info. */
export function expectedKdfInfo(parts: readonly string[]): Buffer {
  return Buffer.concat([
    Buffer.from('keybroker import v1', 'latin1'),
    ...parts.map((p) => Buffer.concat([Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)])),
  ]);
}

export interface JobForImporter {
  readonly wrapping: 'ml-kem' | 'rsa';
  readonly publicKey: Uint8Array;
  readonly kdfInfo: Uint8Array;
}

const kwp = (kek: Uint8Array, key: Uint8Array) => {
  const c = createCipheriv('id-aes256-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
  return Buffer.concat([c.update(key), c.final()]);
};

/** What an external tool sends: the private key wrapped to the job's public key. */
export function wrapForJob(job: JobForImporter, key: Uint8Array): Buffer {
  if (job.wrapping === 'ml-kem') {
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(job.publicKey);
    const kek = new Uint8Array(hkdfSync('sha256', sharedSecret, new Uint8Array(0), job.kdfInfo, 32));
    return Buffer.concat([cipherText, kwp(kek, key)]);
  }
  const aes = randomBytes(32);
  const rsa = createPublicKey({ key: Buffer.from(job.publicKey), format: 'der', type: 'spki' });
  const ct = publicEncrypt({ key: rsa, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, aes);
  return Buffer.concat([ct, kwp(aes, key)]);
}
