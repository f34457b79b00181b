/** A size-bounded map that forgets its least recently used entry (metadata caches). */
export class LruMap<K, V> {
  readonly #max: number;
  readonly #m = new Map<K, V>();

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get size(): number {
    return this.#m.size;
  }

  get(k: K): V | undefined {
    const v = this.#m.get(k);
    if (v !== undefined) {
      this.#m.delete(k);
      this.#m.set(k, v);
    }
    return v;
  }

  set(k: K, v: V): void {
    this.#m.delete(k);
    this.#m.set(k, v);
    while (this.#m.size > this.#max) this.#m.delete(this.#m.keys().next().value as K);
  }

  delete(k: K): void {
    this.#m.delete(k);
  }

  /** Drop every string key starting with `prefix`. */
  deletePrefix(prefix: string): void {
    for (const k of this.#m.keys()) if (typeof k === 'string' && k.startsWith(prefix)) this.#m.delete(k);
  }

  clear(): void {
    this.#m.clear();
  }
}
