/**
 * A CheckpointSigner backed by a non-extractable signing key in the HSM: found by label, or
 * generated with the profile's best signing algorithm on first use.
 */
import { createPublicKey } from 'node:crypto';
import { KbError } from '../errors.ts';
import type { Hsm, HsmSigningAlgorithm } from '../hsm/hsm.ts';
import type { CheckpointSigner } from './checkpoint.ts';

/** Default CKA_LABEL of the audit checkpoint key. */
export const AUDIT_SIGNING_LABEL = 'kb-audit-checkpoint';

function algOf(spki: Uint8Array): HsmSigningAlgorithm {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const t = key.asymmetricKeyType;
  if (t === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  if (t === 'rsa' || t === 'rsa-pss') return 'rsa-pss-sha256-3072';
  throw new KbError('FAILED_PRECONDITION', `audit signing key has unsupported type ${t ?? 'unknown'}`);
}

/** Find or create the audit signing key in `hsm` and wrap it as a CheckpointSigner. */
export async function hsmCheckpointSigner(hsm: Hsm, label = AUDIT_SIGNING_LABEL): Promise<CheckpointSigner> {
  let ref = await hsm.findKey(label, 'signing');
  let spki: Uint8Array;
  if (ref === undefined) {
    const alg = hsm.capabilities.signing[0];
    if (alg === undefined)
      throw new KbError('FAILED_PRECONDITION', 'the HSM profile has no signing algorithm');
    ({ ref, spki } = await hsm.generateSigningKey(label, alg));
  } else {
    spki = await hsm.publicKey(ref);
  }
  const alg = algOf(spki);
  const keyRef = ref;
  return {
    alg,
    publicKeyPem: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' })
      .export({ type: 'spki', format: 'pem' })
      .toString(),
    sign: async (bytes) => (await hsm.sign(keyRef, bytes)).signature,
  };
}
