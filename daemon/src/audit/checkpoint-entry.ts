/** The signed checkpoint entry the sink writes into the chain (FORMAT.md, type 'checkpoint'). */
import { FIELD_LIMITS, cleanText } from './audit-record.ts';
import type { UnsequencedEntry } from './audit-record.ts';
import { checkpointStatement } from './checkpoint.ts';
import type { CheckpointSigner } from './checkpoint.ts';

/** A checkpoint over (seq, hash) signed now by `signer`; rejects when signing fails. */
export async function checkpointEntry(
  signer: CheckpointSigner,
  keyId: string,
  seq: number,
  hash: Buffer,
  now: number,
): Promise<UnsequencedEntry> {
  const coveredHash = hash.toString('hex');
  const sig = await signer.sign(checkpointStatement(seq, coveredHash, now));
  return {
    type: 'checkpoint',
    timeMs: now,
    coveredSeq: seq,
    coveredHash,
    alg: cleanText(signer.alg, FIELD_LIMITS.alg),
    keyId,
    signature: Buffer.from(sig).toString('base64'),
  };
}
