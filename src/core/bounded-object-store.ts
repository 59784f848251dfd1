import { GraftError } from '../errors.js';
import type { ObjectStore, PutOptions, StoredObject } from '../ports/object-store.js';

export interface BoundedObjectStoreOptions {
  /** Longest a call may take before it fails with STORAGE_UNAVAILABLE. @default 10_000 */
  timeoutMs?: number;
  /** A put of `n` bytes gets `n / putBytesPerSecond` seconds more, so large model files are not cut off. @default 1 MiB/s */
  putBytesPerSecond?: number;
}

/**
 * Bounds every call to an object store: a call that has not settled after its deadline, or that fails with an
 * error that is not a GraftError, becomes STORAGE_UNAVAILABLE (HTTP 503). A request then answers with a code
 * instead of hanging, a memoised model load that hung is dropped and tried again, and a job attempt is retried
 * by its queue instead of holding the message forever.
 *
 * The late call is not cancelled (the port has no cancellation): a write that times out may still land, which
 * callers already allow for, since conditional writes and idempotent job ids make a retry safe.
 */
export function boundedObjectStore(store: ObjectStore, options: BoundedObjectStoreOptions = {}): ObjectStore {
  const { timeoutMs = 10_000, putBytesPerSecond = 1024 * 1024 } = options;
  if (!(timeoutMs > 0) || !(putBytesPerSecond > 0)) {
    throw new GraftError('INVALID_OPTIONS', 'timeoutMs and putBytesPerSecond must be positive numbers.');
  }
  const bounded = <T>(operation: string, key: string, call: () => Promise<T>, extraMs = 0): Promise<T> => {
    const limitMs = timeoutMs + extraMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new GraftError(
              'STORAGE_UNAVAILABLE',
              `The object store did not answer a ${operation} of "${key}" within ${Math.round(limitMs)} ms; try again shortly.`,
              { details: { operation, key } },
            ),
          ),
        limitMs,
      );
      timer.unref?.();
    });
    const attempt = (async () => call())().catch((err: unknown) => {
      if (err instanceof GraftError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new GraftError(
        'STORAGE_UNAVAILABLE',
        `The object store failed a ${operation} of "${key}": ${message}`,
        {
          details: { operation, key },
          cause: err,
        },
      );
    });
    return Promise.race([attempt, deadline]).finally(() => clearTimeout(timer));
  };
  return {
    get: (key: string): Promise<StoredObject> => bounded('get', key, () => store.get(key)),
    find: (key: string) => bounded('read', key, () => store.find(key)),
    put: (key: string, body: Uint8Array | string, putOptions?: PutOptions) => {
      const bytes = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      return bounded(
        'write',
        key,
        () => store.put(key, body, putOptions),
        (bytes / putBytesPerSecond) * 1000,
      );
    },
    delete: (key: string) => bounded('delete', key, () => store.delete(key)),
    list: (prefix: string) => bounded('list', prefix, () => store.list(prefix)),
  };
}
