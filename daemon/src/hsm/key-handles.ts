/**
 * Token objects by label: created, found once and cached (C_FindObjects costs ~1.6 ms among ~100
 * objects on SoftHSM, far too slow per request), destroyed. Cached handles belong to one
 * connection generation and are dropped when the module is re-initialised.
 */
import pkcs11js from 'pkcs11js';
import type { Template } from 'pkcs11js';
import { KbError } from '../errors.ts';
import type { HsmKeyRef, HsmSigningAlgorithm } from './hsm.ts';
import type { HsmProfile } from './hsm-profile.ts';
import { ecPointToSpki, rsaToSpki } from './key-encoding.ts';
import { call, callAsync } from './pkcs11-connection.ts';
import type { Pkcs11Connection, SessionCtx } from './pkcs11-connection.ts';
import { Pkcs11Error } from './pkcs11-error.ts';
import {
  ecdsaP256Templates,
  findTemplate,
  omit,
  rootAesTemplate,
  rootHmacTemplate,
  rsa3072Templates,
} from './pkcs11-templates.ts';

const P = pkcs11js;

/** A root key: the AES key, plus its HMAC companion for the CBC-PAD profile. */
export interface RootHandles {
  readonly gen: number;
  readonly aes: Buffer;
  readonly hmac?: Buffer;
}

export interface SigningHandles {
  readonly gen: number;
  readonly alg: HsmSigningAlgorithm;
  readonly priv: Buffer;
  spki?: Buffer;
}

export class KeyHandles {
  readonly #conn: Pkcs11Connection;
  readonly #profile: HsmProfile;
  readonly #roots = new Map<string, RootHandles>();
  readonly #signing = new Map<string, SigningHandles>();
  readonly #creating = new Set<string>();

  constructor(conn: Pkcs11Connection, profile: HsmProfile) {
    this.#conn = conn;
    this.#profile = profile;
  }

  clear(): void {
    this.#roots.clear();
    this.#signing.clear();
  }

  /** The root key's handles, found once per connection generation; undefined if absent. */
  root(s: SessionCtx, label: string): RootHandles | undefined {
    const hit = this.#roots.get(label);
    if (hit && hit.gen === s.gen) return hit;
    const aes = this.#find(s, findTemplate(label, P.CKO_SECRET_KEY, P.CKK_AES))[0];
    if (!aes) {
      this.#roots.delete(label);
      return undefined;
    }
    let found: RootHandles = { gen: s.gen, aes };
    if (this.#profile.wrap === 'aes-cbc-pad-hmac-sha256') {
      const hmac = this.#find(s, findTemplate(label, P.CKO_SECRET_KEY, P.CKK_GENERIC_SECRET))[0];
      if (hmac) found = { ...found, hmac };
    }
    this.#roots.set(label, found);
    return found;
  }

  /** The root key's handles if already found in connection generation `gen` (no Cryptoki call). */
  cachedRoot(label: string, gen: number): RootHandles | undefined {
    const hit = this.#roots.get(label);
    return hit && hit.gen === gen ? hit : undefined;
  }

  requireRoot(s: SessionCtx, label: string): RootHandles {
    const h = this.root(s, label);
    if (!h) throw new KbError('NOT_FOUND', 'root key');
    return h;
  }

  /** The signing key's handles if already found in connection generation `gen`. */
  cachedSigning(label: string, gen: number): SigningHandles | undefined {
    const hit = this.#signing.get(label);
    return hit && hit.gen === gen ? hit : undefined;
  }

  signing(s: SessionCtx, label: string): SigningHandles | undefined {
    const hit = this.#signing.get(label);
    if (hit && hit.gen === s.gen) return hit;
    const priv = this.#find(s, findTemplate(label, P.CKO_PRIVATE_KEY))[0];
    if (!priv) {
      this.#signing.delete(label);
      return undefined;
    }
    const attrs = call('C_GetAttributeValue', () =>
      this.#conn.pkcs11.C_GetAttributeValue(s.handle, priv, [{ type: P.CKA_KEY_TYPE }]),
    );
    const keyType = readUlong(attrs[0]?.value);
    const alg: HsmSigningAlgorithm | undefined =
      keyType === P.CKK_EC ? 'ecdsa-p256' : keyType === P.CKK_RSA ? 'rsa-pss-sha256-3072' : undefined;
    if (!alg) throw new KbError('INTERNAL', undefined, { detail: `signing key has key type ${keyType}` });
    const found: SigningHandles = { gen: s.gen, alg, priv };
    this.#signing.set(label, found);
    return found;
  }

  requireSigning(s: SessionCtx, label: string): SigningHandles {
    const h = this.signing(s, label);
    if (!h) throw new KbError('NOT_FOUND', 'signing key');
    return h;
  }

  /** Generate the root key (and its HMAC companion when the profile wraps with CBC-PAD). */
  async createRoot(s: SessionCtx, label: string): Promise<HsmKeyRef> {
    if (this.#creating.has(label) || this.root(s, label)) throw new KbError('ALREADY_EXISTS', 'root key');
    this.#creating.add(label);
    const p = this.#conn.pkcs11;
    const skip = this.#profile.quirks.keyTemplateOmit;
    try {
      const aesT = omit(rootAesTemplate(label, this.#profile.aesGcm), skip);
      const aes = await callAsync('C_GenerateKey', () =>
        p.C_GenerateKeyAsync(s.handle, { mechanism: P.CKM_AES_KEY_GEN }, aesT),
      );
      let found: RootHandles = { gen: s.gen, aes };
      if (this.#profile.wrap === 'aes-cbc-pad-hmac-sha256') {
        try {
          const hmacT = omit(rootHmacTemplate(label), skip);
          const hmac = await callAsync('C_GenerateKey', () =>
            p.C_GenerateKeyAsync(s.handle, { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN }, hmacT),
          );
          found = { ...found, hmac };
        } catch (err) {
          this.#destroyQuiet(s, aes);
          throw err;
        }
      }
      this.#roots.set(label, found);
      return { label, kind: 'root' };
    } finally {
      this.#creating.delete(label);
    }
  }

  /** Generate a non-extractable signing pair; returns its SPKI DER. */
  async createSigning(s: SessionCtx, label: string, alg: HsmSigningAlgorithm): Promise<Buffer> {
    if (this.#creating.has(label) || this.signing(s, label))
      throw new KbError('ALREADY_EXISTS', 'signing key');
    this.#creating.add(label);
    const p = this.#conn.pkcs11;
    const skip = this.#profile.quirks.keyTemplateOmit;
    try {
      const ec = alg === 'ecdsa-p256';
      const t = ec ? ecdsaP256Templates(label) : rsa3072Templates(label);
      const mech = { mechanism: ec ? P.CKM_EC_KEY_PAIR_GEN : P.CKM_RSA_PKCS_KEY_PAIR_GEN };
      const pair = await callAsync('C_GenerateKeyPair', () =>
        p.C_GenerateKeyPairAsync(s.handle, mech, omit(t.pub, skip), omit(t.priv, skip)),
      );
      const spki = this.#spki(s, pair.publicKey, alg);
      this.#signing.set(label, { gen: s.gen, alg, priv: pair.privateKey, spki });
      return spki;
    } finally {
      this.#creating.delete(label);
    }
  }

  /** SPKI DER of a signing key's public half (cached). */
  publicKey(s: SessionCtx, label: string): Buffer {
    const h = this.requireSigning(s, label);
    if (h.spki) return h.spki;
    const pub = this.#find(s, findTemplate(label, P.CKO_PUBLIC_KEY))[0];
    if (!pub) throw new KbError('NOT_FOUND', 'public key');
    h.spki = this.#spki(s, pub, h.alg);
    return h.spki;
  }

  /** Destroy every object of the key (AES + HMAC, or private + public). Absent is fine. */
  destroy(s: SessionCtx, ref: HsmKeyRef): void {
    const classes = ref.kind === 'root' ? [P.CKO_SECRET_KEY] : [P.CKO_PRIVATE_KEY, P.CKO_PUBLIC_KEY];
    (ref.kind === 'root' ? this.#roots : this.#signing).delete(ref.label);
    for (const cls of classes) {
      for (const obj of this.#find(s, findTemplate(ref.label, cls))) {
        try {
          call('C_DestroyObject', () => this.#conn.pkcs11.C_DestroyObject(s.handle, obj));
        } catch (err) {
          if (!(err instanceof Pkcs11Error && err.kind === 'not-found')) throw err;
        }
      }
    }
  }

  #spki(s: SessionCtx, pub: Buffer, alg: HsmSigningAlgorithm): Buffer {
    const p = this.#conn.pkcs11;
    if (alg === 'ecdsa-p256') {
      const a = call('C_GetAttributeValue', () =>
        p.C_GetAttributeValue(s.handle, pub, [{ type: P.CKA_EC_POINT }]),
      );
      const point = a[0]?.value;
      if (!point) throw new KbError('INTERNAL', undefined, { detail: 'no CKA_EC_POINT' });
      return ecPointToSpki(point);
    }
    const a = call('C_GetAttributeValue', () =>
      p.C_GetAttributeValue(s.handle, pub, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }]),
    );
    const n = a[0]?.value;
    const e = a[1]?.value;
    if (!n || !e) throw new KbError('INTERNAL', undefined, { detail: 'no RSA modulus/exponent' });
    return rsaToSpki(n, e);
  }

  /** C_FindObjectsInit ... C_FindObjectsFinal, the Final also on error. */
  #find(s: SessionCtx, template: Template): Buffer[] {
    const p = this.#conn.pkcs11;
    call('C_FindObjectsInit', () => p.C_FindObjectsInit(s.handle, template));
    try {
      return call('C_FindObjects', () => p.C_FindObjects(s.handle, 16));
    } finally {
      try {
        p.C_FindObjectsFinal(s.handle);
      } catch {
        // A search left open would break the next C_FindObjectsInit on this session: replace it.
        s.poisoned = true;
      }
    }
  }

  #destroyQuiet(s: SessionCtx, obj: Buffer): void {
    try {
      this.#conn.pkcs11.C_DestroyObject(s.handle, obj);
    } catch {
      // Leaves a half-made root key; `root()` then reports it without its HMAC and wrap fails loudly.
      s.poisoned = true;
    }
  }
}

/** A CK_ULONG attribute value (native byte order, 8 bytes on 64-bit Linux). */
function readUlong(v: Buffer | undefined): number | undefined {
  if (!v || v.length < 4) return undefined;
  return v.length >= 8 ? Number(v.readBigUInt64LE(0)) : v.readUInt32LE(0);
}
