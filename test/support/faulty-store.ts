import { GraftError } from '../../src/errors.js';
import type { ObjectStore, PutOptions, StoredObject } from '../../src/ports/object-store.js';

export type StoreOp = 'get' | 'find' | 'put' | 'delete' | 'list';

/**
 * What an injected fault does to a matching call:
 * - `unavailable`: throws GraftError STORAGE_UNAVAILABLE, as the S3 and directory adapters do;
 * - `crash`: throws a plain Error (an adapter bug or a socket reset nobody wrapped);
 * - `hang`: never settles (until `clear()`), like a stuck disk, lock or connection.
 */
export type FaultKind = 'unavailable' | 'crash' | 'hang';

export interface FaultRule {
  fault: FaultKind;
  /** Operations it applies to. @default every operation */
  ops?: StoreOp[];
  /** Keys (or list prefixes) it applies to. @default every key */
  key?: RegExp;
  /** Matching calls it applies to before it is spent. @default unlimited */
  times?: number;
}

export interface StoreCall {
  op: StoreOp;
  key: string;
  fault?: FaultKind;
}

/**
 * An object store that fails, or hangs, on chosen calls of the store it wraps, and records every call.
 * `beforePut` sees each write before it starts and `onPut` each successful one: the crash tests end the process
 * there.
 */
export class FaultyObjectStore implements ObjectStore {
  readonly calls: StoreCall[] = [];
  beforePut: ((key: string, body: Uint8Array | string) => void | Promise<void>) | undefined;
  onPut: ((key: string, body: Uint8Array | string) => void | Promise<void>) | undefined;
  /** Writes and deletes started and not yet settled: while one runs, a local adapter may hold a lock file. */
  pendingWrites = 0;
  #rules: (FaultRule & { left: number })[] = [];
  #hung = new Set<() => void>();

  constructor(readonly inner: ObjectStore) {}

  /** Adds a fault; returns a function that removes it. */
  inject(rule: FaultRule): () => void {
    const entry = { ...rule, left: rule.times ?? Infinity };
    this.#rules.push(entry);
    return () => {
      this.#rules = this.#rules.filter((r) => r !== entry);
    };
  }

  /** Removes every fault and fails the calls left hanging, so nothing waits forever. */
  clear() {
    this.#rules = [];
    for (const release of [...this.#hung]) release();
  }

  /** How many calls met a fault. */
  get faults(): number {
    return this.calls.filter((c) => c.fault).length;
  }

  get(key: string): Promise<StoredObject> {
    return this.#call('get', key, () => this.inner.get(key));
  }

  find(key: string): Promise<StoredObject | undefined> {
    return this.#call('find', key, () => this.inner.find(key));
  }

  async put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<{ etag: string }> {
    await this.beforePut?.(key, body);
    const result = await this.#call('put', key, () => this.inner.put(key, body, options));
    await this.onPut?.(key, body);
    return result;
  }

  delete(key: string): Promise<void> {
    return this.#call('delete', key, () => this.inner.delete(key));
  }

  list(prefix: string): Promise<string[]> {
    return this.#call('list', prefix, () => this.inner.list(prefix));
  }

  async #call<T>(op: StoreOp, key: string, run: () => Promise<T>): Promise<T> {
    const rule = this.#rules.find(
      (r) => r.left > 0 && (!r.ops || r.ops.includes(op)) && (!r.key || r.key.test(key)),
    );
    this.calls.push({ op, key, fault: rule?.fault });
    if (!rule) {
      const write = op === 'put' || op === 'delete';
      if (write) this.pendingWrites++;
      try {
        return await run();
      } finally {
        if (write) this.pendingWrites--;
      }
    }
    rule.left--;
    switch (rule.fault) {
      case 'unavailable':
        throw new GraftError('STORAGE_UNAVAILABLE', `injected: the store is unavailable (${op} ${key})`);
      case 'crash':
        throw Object.assign(new Error(`injected: socket hang up (${op} ${key})`), { code: 'ECONNRESET' });
      case 'hang':
        return new Promise<T>((_, reject) => {
          const release = () => {
            this.#hung.delete(release);
            reject(new Error(`injected hang released (${op} ${key})`));
          };
          this.#hung.add(release);
        });
    }
  }
}
