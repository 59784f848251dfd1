import type { z } from 'zod';
import { GraftError, isCode } from '../errors.js';
import type { ObjectStore, PutOptions } from '../ports/object-store.js';

const decoder = new TextDecoder();

export interface Versioned<T> {
  value: T;
  etag: string;
}

/** Reads and validates a JSON object; undefined when absent. A corrupt object is an INTERNAL error, not a 4xx. */
export async function findJson<S extends z.ZodType>(
  store: ObjectStore,
  key: string,
  schema: S,
): Promise<Versioned<z.infer<S>> | undefined> {
  const object = await store.find(key);
  if (!object) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(object.body));
  } catch (cause) {
    throw new GraftError('INTERNAL', `Stored object ${key} is not valid JSON`, { cause });
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    throw new GraftError(
      'INTERNAL',
      `Stored object ${key} does not match its schema: ${result.error.message}`,
    );
  }
  return { value: result.data, etag: object.etag };
}

export function writeJson(store: ObjectStore, key: string, value: unknown, options: PutOptions = {}) {
  return store.put(key, `${JSON.stringify(value, null, 2)}\n`, {
    contentType: 'application/json',
    ...options,
  });
}

/**
 * Read-modify-write with optimistic concurrency: `change` sees the latest value and returns the next one; on a
 * concurrent write the whole step is retried on the newer value.
 */
export async function updateJson<S extends z.ZodType>(
  store: ObjectStore,
  key: string,
  schema: S,
  change: (current: z.infer<S> | undefined) => z.infer<S>,
  { attempts = 10 }: { attempts?: number } = {},
): Promise<Versioned<z.infer<S>>> {
  for (let attempt = 1; ; attempt++) {
    const current = await findJson(store, key, schema);
    const next = change(current?.value);
    try {
      const { etag } = await writeJson(
        store,
        key,
        next,
        current ? { ifMatch: current.etag } : { ifNoneMatch: '*' },
      );
      return { value: next, etag };
    } catch (err) {
      if (!isCode(err, 'PRECONDITION_FAILED') || attempt >= attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}
