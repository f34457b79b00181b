/**
 * Shred receipts: a canonical JSON body signed by a broker key that never leaves the HSM
 * (ECDSA P-256, or RSA-PSS-SHA256-3072 on tokens without EC). Verifiable offline with
 * `verifyShredReceipt` (Node's crypto.verify) and the PEM inside the receipt.
 */
import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import type { Hsm, HsmKeyRef, HsmSigningAlgorithm } from '../hsm/hsm.ts';
import type { RegistryStore } from '../store/registry-store.ts';
import type { ShredReceipt } from './key-broker-api.ts';

const KEY_NAME = 'receipt-signing';
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

/** Verify a receipt offline: true only if the signature over `body` checks under `publicKeyPem`. */
export function verifyShredReceipt(r: ShredReceipt): boolean {
  try {
    const key = createPublicKey(r.publicKeyPem);
    const sig = Buffer.from(r.signature, 'base64');
    const body = Buffer.from(r.body, 'utf8');
    // The named algorithm must match the key, or a PSS label on an EC key would verify as ECDSA.
    const d = key.asymmetricKeyDetails;
    if (r.signatureAlgorithm === 'ecdsa-p256-sha256') {
      if (key.asymmetricKeyType !== 'ec' || d?.namedCurve !== 'prime256v1') return false;
      return verify('sha256', body, key, sig);
    }
    if (r.signatureAlgorithm === 'rsa-pss-sha256-3072') {
      if (
        (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') ||
        d?.modulusLength !== 3072
      )
        return false;
      return verify(
        'sha256',
        body,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        sig,
      );
    }
    return false;
  } catch {
    return false;
  }
}

/** Holds the broker's receipt signing key (created in the HSM on first use). */
export class ReceiptSigner {
  readonly #hsm: Hsm;
  readonly #registry: RegistryStore;
  #key: { ref: HsmKeyRef; pem: string } | undefined;
  /** The first use's key creation, shared by concurrent first uses (one key, one registry row). */
  #loading: Promise<{ ref: HsmKeyRef; pem: string }> | undefined;

  constructor(hsm: Hsm, registry: RegistryStore) {
    this.#hsm = hsm;
    this.#registry = registry;
  }

  #ensureKey(): Promise<{ ref: HsmKeyRef; pem: string }> {
    if (this.#key) return Promise.resolve(this.#key);
    // Concurrent first shreds each generated a pair: orphan HSM keys, a UNIQUE failure on the
    // registry row, and concurrent C_GenerateKeyPair calls SoftHSM sometimes fails.
    this.#loading ??= this.#loadKey().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #loadKey(): Promise<{ ref: HsmKeyRef; pem: string }> {
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
    const pem = createPublicKey({ key: Buffer.from(row.spki), format: 'der', type: 'spki' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    this.#key = { ref, pem };
    return this.#key;
  }

  async sign(body: Json): Promise<ShredReceipt> {
    const k = await this.#ensureKey();
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
