/**
 * Key material in memory. It prints as a placeholder (JSON, util.inspect, String) so it can never
 * reach a log by accident, and it is zeroed when dropped from a cache.
 */
import { inspect } from 'node:util';

const REDACTED = '[secret]';

export class SecretBytes {
  #bytes: Uint8Array;
  #destroyed = false;

  /** Takes ownership of `bytes`: the caller must not keep using the array. */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** A copy the caller owns (and should zero). */
  static copyOf(bytes: Uint8Array): SecretBytes {
    return new SecretBytes(Uint8Array.from(bytes));
  }

  get length(): number {
    return this.#bytes.length;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The raw bytes, for the primitive that needs them. Throws once destroyed. */
  expose(): Uint8Array {
    if (this.#destroyed) throw new Error('secret used after it was destroyed');
    return this.#bytes;
  }

  /** Zero the bytes; later use throws. */
  destroy(): void {
    this.#bytes.fill(0);
    this.#destroyed = true;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
