/**
 * Token objects by label: created, found once and cached (C_FindObjects costs ~1.6 ms among ~100
 * objects on SoftHSM, far too slow per request), destroyed. Cached handles belong to one
 * connection generation and are dropped when the module is re-initialised.
 */
import pkcs11js from 'pkcs11js';
import type { Template } from 'pkcs11js';
import { KbError } from '../errors.ts';
import type { HsmKeyRef, HsmSigningAlgorithm, RootKeyOptions } from './hsm.ts';
import { silentLogger, type HsmLogger } from './pkcs11-connection.ts';
import type { HsmProfile } from './hsm-profile.ts';
import { ecPointToSpki, rsaToSpki } from './key-encoding.ts';
import { call, callAsync } from './pkcs11-connection.ts';
import type { Pkcs11Connection, SessionCtx } from './pkcs11-connection.ts';
import { Pkcs11Error } from './pkcs11-error.ts';
import { judgeRootKey, rootKeyRefused } from './root-key-check.ts';
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
  readonly #log: HsmLogger;

  constructor(conn: Pkcs11Connection, profile: HsmProfile, log: HsmLogger = silentLogger) {
    this.#conn = conn;
    this.#profile = profile;
    this.#log = log;
  }

  /** CKA_ALLOWED_MECHANISMS for a new key, when the profile says the token supports it. */
  #allowed(mechs: readonly number[]): readonly number[] | undefined {
    return this.#profile.allowedMechanisms === true ? mechs : undefined;
  }

  /**
   * A root key found in the token is used only if its attributes are safe (checked once per key
   * and connection generation: the handles are cached after); see root-key-check.ts.
   */
  #checkRoot(s: SessionCtx, label: string, found: RootHandles): void {
    const aes = judgeRootKey(this.#conn, s, found.aes, true);
    const hmac = found.hmac === undefined ? undefined : judgeRootKey(this.#conn, s, found.hmac, false);
    const refused = [...aes.refused, ...(hmac?.refused.map((r) => `HMAC key: ${r}`) ?? [])];
    if (refused.length > 0) {
      this.#log.error({ label, refused }, 'root key refused: unsafe attributes');
      throw rootKeyRefused(label, refused);
    }
    if (aes.legacy.length > 0)
      this.#log.warn(
        { label, attributes: aes.legacy },
        'root key made by an older broker allows encrypt/decrypt (unused); its next version will not',
      );
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
    this.#checkRoot(s, label, found);
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

  /**
   * Generate the root key (and its HMAC companion when the profile wraps with CBC-PAD), allowed
   * only the profile's wrap mechanism (plus AES-GCM with `gcm`, on a profile that has it).
   */
  async createRoot(s: SessionCtx, label: string, o: RootKeyOptions = {}): Promise<HsmKeyRef> {
    if (this.#creating.has(label) || this.root(s, label)) throw new KbError('ALREADY_EXISTS', 'root key');
    this.#creating.add(label);
    const p = this.#conn.pkcs11;
    const skip = this.#profile.quirks.keyTemplateOmit;
    try {
      const gcm = o.gcm === true && this.#profile.aesGcm;
      const wrapMech = this.#profile.wrap === 'aes-kwp' ? P.CKM_AES_KEY_WRAP_PAD : P.CKM_AES_CBC_PAD;
      const allowed = this.#allowed(gcm ? [wrapMech, P.CKM_AES_GCM] : [wrapMech]);
      const aesT = omit(rootAesTemplate(label, { encrypt: gcm, allowed }), skip);
      const aes = await callAsync('C_GenerateKey', () =>
        p.C_GenerateKeyAsync(s.handle, { mechanism: P.CKM_AES_KEY_GEN }, aesT),
      );
      let found: RootHandles = { gen: s.gen, aes };
      if (this.#profile.wrap === 'aes-cbc-pad-hmac-sha256') {
        try {
          const hmacT = omit(rootHmacTemplate(label, this.#allowed([P.CKM_SHA256_HMAC])), skip);
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
      const pss =
        this.#profile.rsaPssMechanism === 'CKM_SHA256_RSA_PKCS_PSS'
          ? P.CKM_SHA256_RSA_PKCS_PSS
          : P.CKM_RSA_PKCS_PSS;
      const allowed = this.#allowed([ec ? P.CKM_ECDSA : pss]);
      const t = ec ? ecdsaP256Templates(label, allowed) : rsa3072Templates(label, allowed);
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
