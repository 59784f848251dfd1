/**
 * Values read from the store, kept per key for `ttlMs` from the start of their read. `invalidate` drops one at once,
 * for a write this process made: the next `get` reads again, and a read already in flight when the write landed
 * still answers its own callers but is not kept. Concurrent `get`s of a key share one read; a failed read is not
 * kept. With `ttlMs` 0 every `get` reads.
 */
// Keys are names that requests bring (any task name, known or not): past this many entries, expired ones are
// dropped, so names that are asked for once do not pile up.
const SWEEP_ABOVE = 1_000;

export class ReadThroughCache<V> {
  readonly #entries = new Map<string, { value: Promise<V>; readAt: number }>();

  constructor(private readonly ttlMs: number) {}

  get(key: string, read: () => Promise<V>): Promise<V> {
    const cached = this.#entries.get(key);
    const now = Date.now();
    if (cached && now - cached.readAt < this.ttlMs) return cached.value;
    const entry = { value: read(), readAt: now };
    if (this.ttlMs > 0) {
      if (this.#entries.size >= SWEEP_ABOVE) {
        for (const [other, { readAt }] of this.#entries) {
          if (now - readAt >= this.ttlMs) this.#entries.delete(other);
        }
      }
      this.#entries.set(key, entry);
      entry.value.catch(() => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      });
    }
    return entry.value;
  }

  invalidate(key: string): void {
    this.#entries.delete(key);
  }
}
