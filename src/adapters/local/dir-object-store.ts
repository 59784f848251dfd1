import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { GraftError } from '../../errors.js';
import type { ObjectStore, PutOptions, StoredObject } from '../../ports/object-store.js';
import { errnoCode, FileLocks, fsyncDir, LOCK_PREFIX, TEMP_PREFIX, writeTempFile } from './file-lock.js';

// Longest key segment in UTF-8 bytes: leaves room for the lock-file prefix within the usual 255-byte name limit.
const MAX_SEGMENT_BYTES = 200;
const MAX_KEY_LENGTH = 1024;

/**
 * The object store over a local directory: key `a/b/c.json` is the file `<root>/a/b/c.json`.
 *
 * Writes are atomic (temp file, fsync, rename). ETags are the quoted hex MD5 of the content, as S3 gives for
 * single-part uploads. Every write and delete of a key runs under that key's lock (in-process queue plus a
 * `.lock-<name>` file beside the object), so conditional writes are race-free across processes too.
 *
 * A directory cannot hold both a file `a` and a directory `a/`: unlike S3, keys `a` and `a/b` cannot coexist,
 * and writing the second throws CONFLICT. Names starting with `.tmp-` or `.lock-` are reserved.
 */
export class DirObjectStore implements ObjectStore {
  readonly #root: string;
  readonly #locks = new FileLocks({ errorCode: 'STORAGE_UNAVAILABLE' });

  constructor(root: string) {
    this.#root = resolve(root);
  }

  async get(key: string): Promise<StoredObject> {
    const object = await this.find(key);
    if (!object) {
      throw new GraftError('OBJECT_NOT_FOUND', `No object at key "${key}".`, { details: { key } });
    }
    return object;
  }

  async find(key: string): Promise<StoredObject | undefined> {
    return this.#read(this.#pathOf(key), key);
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const path = this.#pathOf(key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const etag = etagOf(bytes);
    const dir = dirname(path);
    try {
      await mkdir(dir, { recursive: true });
      // The slow part (writing and syncing the content) happens before taking the lock.
      const temp = await writeTempFile(dir, bytes);
      let published = false;
      try {
        await this.#locks.run(lockPathOf(path), async () => {
          if (options.ifMatch !== undefined || options.ifNoneMatch !== undefined) {
            const current = await this.#read(path, key);
            checkPrecondition(key, current?.etag, options);
          }
          await rename(temp, path);
          published = true;
        });
      } finally {
        if (!published) await unlink(temp).catch(() => {});
      }
      await fsyncDir(dir);
    } catch (err) {
      throw storageError('write', key, err);
    }
    return { etag };
  }

  async delete(key: string): Promise<void> {
    const path = this.#pathOf(key);
    try {
      // Without its directory the object cannot exist, and the lock file would have nowhere to go.
      if (!(await exists(dirname(path)))) return;
      await this.#locks.run(lockPathOf(path), async () => {
        try {
          await unlink(path);
        } catch (err) {
          if (!isMissing(err)) throw err;
        }
      });
    } catch (err) {
      throw storageError('delete', key, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix);
    const keys: string[] = [];
    try {
      await this.#walk(this.#root, '', prefix, keys);
    } catch (err) {
      throw storageError('list', prefix, err);
    }
    // S3 orders keys by their UTF-8 bytes, which differs from UTF-16 order above U+FFFF.
    return keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  async #walk(dir: string, keyPrefix: string, prefix: string, out: string[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const entry of entries) {
      if (isReserved(entry.name)) continue;
      const key = keyPrefix + entry.name;
      if (entry.isDirectory()) {
        const below = `${key}/`;
        // Descend only where keys starting with the prefix can be: the prefix may end mid-segment.
        if (below.startsWith(prefix) || prefix.startsWith(below)) {
          await this.#walk(join(dir, entry.name), below, prefix, out);
        }
      } else if (entry.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }

  async #read(path: string, key: string): Promise<StoredObject | undefined> {
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw storageError('read', key, err);
    }
    const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return { body: bytes, etag: etagOf(bytes) };
  }

  #pathOf(key: string): string {
    checkKey(key);
    const path = join(this.#root, ...key.split('/'));
    // Unreachable after checkKey; kept so that no future change to the checks can escape the root.
    if (!path.startsWith(this.#root + sep)) throw badKey(key, 'it resolves outside the store');
    return path;
  }
}

function etagOf(bytes: Uint8Array): string {
  return `"${createHash('md5').update(bytes).digest('hex')}"`;
}

function checkPrecondition(key: string, currentEtag: string | undefined, options: PutOptions): void {
  if (options.ifNoneMatch === '*' && currentEtag !== undefined) {
    throw new GraftError(
      'PRECONDITION_FAILED',
      `An object already exists at key "${key}" (If-None-Match: *).`,
      {
        details: { key, etag: currentEtag },
      },
    );
  }
  if (options.ifMatch !== undefined) {
    if (currentEtag === undefined) {
      throw new GraftError(
        'PRECONDITION_FAILED',
        `No object at key "${key}" to match ETag ${options.ifMatch}.`,
        {
          details: { key },
        },
      );
    }
    if (unquote(options.ifMatch) !== unquote(currentEtag)) {
      throw new GraftError(
        'PRECONDITION_FAILED',
        `The object at key "${key}" changed: its ETag is ${currentEtag}, not ${options.ifMatch}. Read it again and retry.`,
        { details: { key, etag: currentEtag } },
      );
    }
  }
}

function unquote(etag: string): string {
  return etag.replace(/^"(.*)"$/, '$1');
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw badKey(key, 'it is empty');
  if (key.length > MAX_KEY_LENGTH) throw badKey(key, `it is longer than ${MAX_KEY_LENGTH} characters`);
  checkCharacters(key);
  for (const segment of key.split('/')) {
    if (segment === '') throw badKey(key, "it has an empty segment (a leading, trailing or doubled '/')");
    checkSegment(key, segment);
  }
}

function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  checkCharacters(prefix);
  // The last segment may be partial (or empty after a trailing '/'); the others must be real segments.
  for (const segment of prefix.split('/')) {
    if (segment !== '') checkSegment(prefix, segment);
  }
}

function checkCharacters(key: string): void {
  if (key.startsWith('/')) throw badKey(key, 'it is an absolute path');
  if (key.includes('\\')) throw badKey(key, 'it contains a backslash');
  if (key.includes('\0')) throw badKey(key, 'it contains a NUL character');
}

function checkSegment(key: string, segment: string): void {
  if (segment === '.' || segment === '..') throw badKey(key, `it has a "${segment}" segment`);
  if (isReserved(segment))
    throw badKey(key, `segments starting with "${TEMP_PREFIX}" or "${LOCK_PREFIX}" are reserved`);
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
    throw badKey(key, `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
}

function badKey(key: string, reason: string): GraftError {
  const shown = JSON.stringify(key.length > 120 ? `${key.slice(0, 120)}…` : key);
  return new GraftError('BAD_REQUEST', `Invalid object key ${shown}: ${reason}.`, {
    details: { key: key.slice(0, 200) },
  });
}

function isReserved(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) || name.startsWith(LOCK_PREFIX);
}

function lockPathOf(path: string): string {
  return join(dirname(path), `${LOCK_PREFIX}${basename(path)}`);
}

// ENOTDIR / EISDIR on a read mean the key names a directory, or goes through a file: no such object.
function isMissing(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

function storageError(operation: string, key: string, err: unknown): GraftError {
  if (err instanceof GraftError) return err;
  const code = errnoCode(err);
  if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST') {
    return new GraftError(
      'CONFLICT',
      `Cannot ${operation} key "${key}": a directory store cannot hold both a key and keys below it ("a" and "a/b").`,
      { details: { key }, cause: err },
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new GraftError(
    'STORAGE_UNAVAILABLE',
    `Cannot ${operation} key "${key}" in the local store: ${message}`,
    {
      details: { key },
      cause: err,
    },
  );
}
