/**
 * Shred receipts: a canonical JSON body signed by a broker key that never leaves the HSM
 * (ECDSA P-256, or RSA-PSS-SHA256-3072 on tokens without EC). The signed body (v2) names the
 * key's SHA-256 fingerprint, the broker instance and the domain string; verify offline with
 * `verifyShredReceipt` against the PINNED key (receipt-verifier.ts), never the receipt's own PEM.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import type { Hsm, HsmKeyRef, HsmSigningAlgorithm } from '../hsm/hsm.ts';
import type { RegistryStore } from '../store/registry-store.ts';
import type { PublishedKey, ShredReceipt } from './key-broker-api.ts';
import { RECEIPT_DOMAIN, spkiSha256 } from './receipt-verifier.ts';

export { checkShredReceipt, verifyShredReceipt } from './receipt-verifier.ts';
export type { TrustedReceiptKey } from './receipt-verifier.ts';

const KEY_NAME = 'receipt-signing';

interface SigningKey {
  readonly ref: HsmKeyRef;
  readonly pem: string;
  readonly published: PublishedKey;
}
type Json = string | number | boolean | null | readonly Json[] | { readonly [k: string]: Json | undefined };

/** JSON with object keys sorted at every level and no whitespace: one byte string per value. */
export function canonicalJson(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x: Json) => canonicalJson(x)).join(',')}]`;
  const o = v as { readonly [k: string]: Json | undefined };
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k] as Json)}`).join(',')}}`;
}

const SIG_ALG_NAME: Record<HsmSigningAlgorithm, string> = {
  'ecdsa-p256': 'ecdsa-p256-sha256',
  'rsa-pss-sha256-3072': 'rsa-pss-sha256-3072',
};

/** A PEM public key as published for pinning (fingerprint = SHA-256 of the SPKI DER). */
export function publishedKey(pem: string): PublishedKey {
  const key = createPublicKey(pem);
  const t = key.asymmetricKeyType;
  const algorithm =
    t === 'ec'
      ? 'ecdsa-p256-sha256'
      : t === 'rsa' || t === 'rsa-pss'
        ? 'rsa-pss-sha256-3072'
        : (t ?? 'unknown');
  return {
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
    sha256: spkiSha256(key),
    algorithm,
  };
}

/** Holds the broker's receipt signing key (created in the HSM on first use). */
export class ReceiptSigner {
  readonly #hsm: Hsm;
  readonly #registry: RegistryStore;
  #key: SigningKey | undefined;
  /** The first use's key creation, shared by concurrent first uses (one key, one registry row). */
  #loading: Promise<SigningKey> | undefined;

  constructor(hsm: Hsm, registry: RegistryStore) {
    this.#hsm = hsm;
    this.#registry = registry;
  }

  #ensureKey(): Promise<SigningKey> {
    if (this.#key) return Promise.resolve(this.#key);
    // Concurrent first shreds each generated a pair: orphan HSM keys, a UNIQUE failure on the
    // registry row, and concurrent C_GenerateKeyPair calls SoftHSM sometimes fails.
    this.#loading ??= this.#loadKey().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #loadKey(): Promise<SigningKey> {
    let row = this.#registry.getBrokerKey(KEY_NAME);
    if (!row) {
      const alg: HsmSigningAlgorithm = this.#hsm.capabilities.signing.includes('ecdsa-p256')
        ? 'ecdsa-p256'
        : 'rsa-pss-sha256-3072';
      const label = `kb-receipt-signing-${randomBytes(6).toString('hex')}`;
      const { spki } = await this.#hsm.generateSigningKey(label, alg);
      this.#registry.insertBrokerKey(KEY_NAME, label, alg, spki);
      row = { hsmLabel: label, alg, spki };
    }
    const ref = (await this.#hsm.findKey(row.hsmLabel, 'signing')) ?? {
      label: row.hsmLabel,
      kind: 'signing' as const,
    };
    const key = createPublicKey({ key: Buffer.from(row.spki), format: 'der', type: 'spki' });
    const pem = key.export({ type: 'spki', format: 'pem' }).toString();
    const algorithm = SIG_ALG_NAME[row.alg as HsmSigningAlgorithm] ?? row.alg;
    this.#key = { ref, pem, published: { publicKeyPem: pem, sha256: spkiSha256(key), algorithm } };
    return this.#key;
  }

  /** The receipt key as published for pinning (created in the HSM on first use). */
  async publicKey(): Promise<PublishedKey> {
    return (await this.#ensureKey()).published;
  }

  /** This broker's instance id (random, made once, kept in the registry), named in receipts. */
  instanceId(): string {
    this.#instance ??= this.#registry.metaValue('instance-id', () => `kb-${randomBytes(8).toString('hex')}`);
    return this.#instance;
  }
  #instance: string | undefined;

  /**
   * Sign a receipt body. The signer adds, under the signature, the domain string, the signing
   * key's fingerprint and the broker instance, so a receipt names the key it must verify under.
   */
  async sign(fields: { readonly [k: string]: Json | undefined }): Promise<ShredReceipt> {
    const k = await this.#ensureKey();
    const body: Json = {
      ...fields,
      domain: RECEIPT_DOMAIN,
      signerKeySha256: k.published.sha256,
      brokerInstance: this.instanceId(),
    };
    const text = canonicalJson(body);
    const { alg, signature } = await this.#hsm.sign(k.ref, new TextEncoder().encode(text));
    return {
      body: text,
      signatureAlgorithm: SIG_ALG_NAME[alg],
      signature: Buffer.from(signature).toString('base64'),
      publicKeyPem: k.pem,
    };
  }
}
