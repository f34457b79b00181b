/**
 * A small LRU of parsed public keys. Parsing an ML-KEM/ML-DSA public key costs about as much as
 * the operation itself, and callers verify or encapsulate to the same few keys again and again.
 * Keyed by algorithm and the key bytes (base64), so a lookup can never return another key.
 */
export class PublicKeyCache<V> {
  readonly #max: number;
  readonly #map = new Map<string, V>();
  /** The last value per key array: a batch verifies against one array many times (no base64 each). */
  readonly #byArray = new WeakMap<Uint8Array, { alg: string; copy: Buffer; value: V }>();

  constructor(max = 256) {
    this.#max = max;
  }

  /** The cached value for (alg, bytes), or `make()` stored and returned. */
  get(alg: string, bytes: Uint8Array, make: () => V): V {
    // Compared byte for byte: the array may have been written to since it was cached.
    const seen = this.#byArray.get(bytes);
    if (seen !== undefined && seen.alg === alg && seen.copy.equals(bytes)) return seen.value;
    const value = this.#get(alg, bytes, make);
    this.#byArray.set(bytes, { alg, copy: Buffer.from(bytes), value });
    return value;
  }

  #get(alg: string, bytes: Uint8Array, make: () => V): V {
    const id = `${alg}:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
    const hit = this.#map.get(id);
    if (hit !== undefined) {
      this.#map.delete(id);
      this.#map.set(id, hit);
      return hit;
    }
    const value = make();
    this.#map.set(id, value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value;
      if (oldest !== undefined) this.#map.delete(oldest);
    }
    return value;
  }

  get size(): number {
    return this.#map.size;
  }
}
