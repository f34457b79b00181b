/**
 * Checks of a private key brought in by a key import, and its conversion to the stored form
 * (asymmetric-key-material.ts: seeds). Accepted encodings:
 *   ML-KEM-768/1024   64-byte seed d ‖ z, or PKCS#8 (seed, or seed and expanded dk)
 *   ML-DSA-44/65/87   32-byte seed ξ, or PKCS#8 (seed, or seed and expanded sk)
 *   X-Wing            32-byte seed (draft-08)
 *   Ed25519           32-byte seed, or PKCS#8 (RFC 8410)
 * An expanded key without its seed is refused: the broker stores keys as seeds (one form for
 * the worker pool, the sealed boxes and the row checks) and a seed cannot be recovered from the
 * expanded key. An expanded key sent with its seed must pass the FIPS 203 §7.3 / FIPS 204 checks
 * (fips-key-checks.ts) and equal the key the seed derives. The public key is always derived
 * here; one the importer names must equal it. Errors name the check, never key bytes.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { KbError } from '../errors.ts';
import { ed25519PrivateKey, ed25519PublicKey } from '../pqc/classical-signatures.ts';
import { mlDsaSecretKeyCheck, mlKemHashCheck, mlKemModulusCheck } from '../pqc/fips-key-checks.ts';
import { KEM_LENGTHS, SIG_LENGTHS, type KemAlgorithm, type SigAlgorithm } from '../pqc/pqc-params.ts';
import { SecretBytes } from '../util/secret-bytes.ts';
import type { AsymmetricRuntime } from './asymmetric-key-material.ts';
import type { AsymmetricKeyType } from './asymmetric-key-store.ts';

/** Key types an import may bring (the HSM-resident and composite types have no import path). */
export const IMPORTABLE_TYPES: readonly AsymmetricKeyType[] = [
  'ml-kem-768',
  'ml-kem-1024',
  'ml-dsa-44',
  'ml-dsa-65',
  'ml-dsa-87',
  'x-wing',
  'ed25519',
];

const bad = (why: string) => new KbError('INVALID_ARGUMENT', `imported private key: ${why}`);

const equal = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/**
 * The seed and expanded key of a seed-and-expanded PKCS#8 key (its tail is SEQUENCE { OCTET
 * STRING seed, OCTET STRING expandedKey }), read before OpenSSL parses it so that the FIPS checks
 * name what is wrong; undefined for any other shape.
 */
function bothForm(
  der: Uint8Array,
  seedLen: number,
  len: number,
): { seed: Uint8Array; expanded: Uint8Array } | undefined {
  const e = der.length - len; // expanded key: 04 82 hi lo <len bytes>
  const sd = e - 4 - seedLen; // seed: 04 <seedLen> <seedLen bytes>
  if (
    sd < 2 ||
    der[e - 4] !== 0x04 ||
    der[e - 3] !== 0x82 ||
    der[e - 2] !== len >> 8 ||
    der[e - 1] !== (len & 0xff)
  )
    return undefined;
  if (der[sd - 2] !== 0x04 || der[sd - 1] !== seedLen) return undefined;
  return { seed: der.subarray(sd, sd + seedLen), expanded: der.subarray(e) };
}

/** The seed of a PKCS#8 key of `type` (seed-only or seed-and-expanded; the caller checked the latter). */
function seedOfPkcs8(type: KemAlgorithm | SigAlgorithm, der: Uint8Array): Uint8Array {
  let k: KeyObject;
  try {
    k = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  } catch (err) {
    void err; // OpenSSL's reason may quote the encoding: the caller gets the check's name only
    throw bad(`not a ${type} seed or a valid PKCS#8 ${type} key`);
  }
  if (k.asymmetricKeyType !== type)
    throw bad(`PKCS#8 key is ${k.asymmetricKeyType ?? 'unknown'}, not ${type}`);
  try {
    return new Uint8Array(k.export({ format: 'raw-seed' }));
  } catch (err) {
    void err;
    throw bad(
      'an expanded key without its seed cannot be imported; export the seed (or seed and expanded key)',
    );
  }
}

/** The seed and the derived public key of an imported key of `type`; the input is not consumed. */
export function importedKeyMaterial(
  rt: AsymmetricRuntime,
  type: AsymmetricKeyType,
  bytes: Uint8Array,
  expectPublicKey?: Uint8Array,
): { secret: SecretBytes; publicKey: Uint8Array } {
  const out = derive(rt, type, bytes);
  if (expectPublicKey !== undefined && expectPublicKey.length > 0 && !equal(expectPublicKey, out.publicKey)) {
    out.secret.destroy();
    throw bad('public key does not match the private key');
  }
  return out;
}

function derive(
  rt: AsymmetricRuntime,
  type: AsymmetricKeyType,
  bytes: Uint8Array,
): { secret: SecretBytes; publicKey: Uint8Array } {
  switch (type) {
    case 'ml-kem-768':
    case 'ml-kem-1024':
    case 'ml-dsa-44':
    case 'ml-dsa-65':
    case 'ml-dsa-87': {
      const kem = type.startsWith('ml-kem');
      const lengths = kem ? KEM_LENGTHS[type as KemAlgorithm] : SIG_LENGTHS[type as SigAlgorithm];
      if (bytes.length === lengths.secretKey)
        throw bad(
          'an expanded key without its seed cannot be imported; export the seed (or seed and expanded key)',
        );
      const both =
        bytes.length > lengths.secretKey ? bothForm(bytes, lengths.seed, lengths.secretKey) : undefined;
      const expanded = both?.expanded;
      const seed =
        bytes.length === lengths.seed
          ? Uint8Array.from(bytes)
          : Uint8Array.from(both?.seed ?? seedOfPkcs8(type, bytes));
      const kp = rt.openssl.generateKeyPair(type, seed);
      try {
        const dk = kp.secretKey.expose();
        // FIPS 203 §7.2/§7.3 and FIPS 204 checks on what was sent, then on what the seed gives.
        if (expanded !== undefined) {
          const ok = kem
            ? mlKemHashCheck(type as KemAlgorithm, expanded)
            : mlDsaSecretKeyCheck(type as SigAlgorithm, expanded, kp.publicKey);
          if (!ok)
            throw bad(`expanded key fails the ${kem ? 'FIPS 203 hash/modulus' : 'FIPS 204'} key check`);
          if (!equal(expanded, dk)) throw bad('expanded key does not match its seed');
          // The rest of the DER (version, algorithm identifier) as OpenSSL reads it.
          if (!equal(seedOfPkcs8(type, bytes), seed)) throw bad('PKCS#8 seed does not match');
        }
        const derivedOk = kem
          ? mlKemModulusCheck(type as KemAlgorithm, kp.publicKey) && mlKemHashCheck(type as KemAlgorithm, dk)
          : mlDsaSecretKeyCheck(type as SigAlgorithm, dk, kp.publicKey);
        if (!derivedOk) throw bad('derived key fails its FIPS key check');
        return { secret: new SecretBytes(seed), publicKey: kp.publicKey };
      } catch (err) {
        seed.fill(0);
        throw err;
      } finally {
        kp.secretKey.destroy();
        kp.seed?.destroy();
      }
    }
    case 'x-wing': {
      if (bytes.length !== 32) throw bad('an X-Wing key is its 32-byte seed');
      const seed = Uint8Array.from(bytes);
      const kp = rt.xwing.generateKeyPair(seed);
      kp.seed.destroy();
      return { secret: new SecretBytes(seed), publicKey: kp.publicKey };
    }
    case 'ed25519': {
      let seed: Uint8Array;
      if (bytes.length === 32) seed = Uint8Array.from(bytes);
      else {
        let k: KeyObject;
        try {
          k = createPrivateKey({ key: Buffer.from(bytes), format: 'der', type: 'pkcs8' });
        } catch (err) {
          void err;
          throw bad('not a 32-byte Ed25519 seed or a PKCS#8 Ed25519 key');
        }
        if (k.asymmetricKeyType !== 'ed25519')
          throw bad(`PKCS#8 key is ${k.asymmetricKeyType ?? 'unknown'}, not ed25519`);
        seed = new Uint8Array(k.export({ format: 'raw-private' }));
      }
      return { secret: new SecretBytes(seed), publicKey: ed25519PublicKey(ed25519PrivateKey(seed)) };
    }
    default:
      throw new KbError('INVALID_ARGUMENT', `${type} keys cannot be imported`);
  }
}
