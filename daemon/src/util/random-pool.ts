/**
 * Random bytes for PUBLIC per-message values (salts, nonces) from a pre-filled CSPRNG buffer.
 * Why: each randomFillSync call builds a crypto job (~2.5 µs in a loop, more under load), which
 * was a fifth of a 1 KiB seal's CPU; one call per 4 KiB amortises that (Node's randomUUID pools
 * the same way). Every pooled byte is handed out once and then zeroed. Never use this for key
 * material: secrets should not sit in a long-lived buffer before they are needed.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let pos = POOL_BYTES;

/** Fill `out[offset, offset + n)` with fresh random bytes (n up to 4096). */
export function fillPublicRandom(out: Uint8Array, offset: number, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > POOL_BYTES) throw new RangeError('random request size');
  if (offset < 0 || offset + n > out.length) throw new RangeError('random request out of bounds');
  if (pos + n > POOL_BYTES) {
    randomFillSync(pool);
    pos = 0;
  }
  out.set(pool.subarray(pos, pos + n), offset);
  pool.fill(0, pos, pos + n);
  pos += n;
}
