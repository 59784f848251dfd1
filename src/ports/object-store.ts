/**
 * The object store: S3 in AWS, a directory locally. Keys follow the storage layout in README ("Storage
 * layout"). Every write is atomic: a reader sees the old object or the new one, never a part.
 */
export interface StoredObject {
  body: Uint8Array;
  etag: string;
}

export interface PutOptions {
  /** Write only if the object's current ETag equals this (optimistic concurrency); else PRECONDITION_FAILED. */
  ifMatch?: string;
  /** `'*'`: write only if no object exists at the key; else PRECONDITION_FAILED. */
  ifNoneMatch?: '*';
  contentType?: string;
}

export interface ObjectStore {
  /** Returns the object, or throws GraftError OBJECT_NOT_FOUND. */
  get(key: string): Promise<StoredObject>;
  /** Returns the object, or undefined when there is none. */
  find(key: string): Promise<StoredObject | undefined>;
  /** Writes atomically; conditional writes throw GraftError PRECONDITION_FAILED when the condition fails. */
  put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<{ etag: string }>;
  /** Deletes the object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Every key that starts with `prefix`, in lexicographic order. */
  list(prefix: string): Promise<string[]>;
}
