import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GraftError } from '../../errors.js';

// File-system primitives shared by the local adapters (directory object store, durable job queue): a lock
// that serialises a critical section within this process and across processes, and atomic writes.

/** File names starting with this are unpublished writes: never a key, never listed, never a message. */
export const TEMP_PREFIX = '.tmp-';
/** File names starting with this are lock files: never a key, never listed. */
export const LOCK_PREFIX = '.lock-';
/** What a lock file says about its holder: `host pid`. */
const HOLDER = `${hostname()} ${process.pid}`;

export interface FileLocksOptions {
  /** A lock file whose mtime is older than this belongs to a crashed holder and is broken. @default 30_000 */
  staleMs?: number;
  /** Give up acquiring after this long. @default twice `staleMs` */
  timeoutMs?: number;
  /** The code of the GraftError thrown when a lock cannot be taken in time. @default 'STORAGE_UNAVAILABLE' */
  errorCode?: 'STORAGE_UNAVAILABLE' | 'QUEUE_UNAVAILABLE';
}

/**
 * Mutual exclusion by lock path. `run(lockPath, fn)` first queues behind earlier callers for the same path in
 * this process (a promise chain, so waiting costs no polling), then takes an exclusive lock file
 * (`open(lockPath, 'wx')`) so that other processes on the same directory are excluded too.
 *
 * A holder refreshes its lock file's mtime while it runs; a lock not refreshed for `staleMs` is taken to be
 * left by a crashed process and is broken. The file also names its holder (host and process id): a lock whose
 * holder was a process on this host that no longer exists is broken at once, so a killed process does not stall
 * its keys for `staleMs`. Critical sections should be short (read, compare, rename).
 */
export class FileLocks {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #staleMs: number;
  readonly #timeoutMs: number;
  readonly #errorCode: 'STORAGE_UNAVAILABLE' | 'QUEUE_UNAVAILABLE';

  constructor({ staleMs = 30_000, timeoutMs, errorCode = 'STORAGE_UNAVAILABLE' }: FileLocksOptions = {}) {
    this.#staleMs = staleMs;
    this.#timeoutMs = timeoutMs ?? 2 * staleMs;
    this.#errorCode = errorCode;
  }

  /** Runs `fn` while holding the lock at `lockPath`; the lock's directory must exist. */
  async run<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(lockPath) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(lockPath, tail);
    await previous;
    try {
      return await this.#withLockFile(lockPath, fn);
    } finally {
      release();
      if (this.#tails.get(lockPath) === tail) this.#tails.delete(lockPath);
    }
  }

  async #withLockFile<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
    const ino = await this.#acquire(lockPath);
    // Refresh the mtime so a long (or slow) holder is not mistaken for a crashed one.
    const heartbeat = setInterval(
      () => {
        const now = new Date();
        utimes(lockPath, now, now).catch(() => {});
      },
      Math.max(10, Math.floor(this.#staleMs / 3)),
    );
    heartbeat.unref();
    try {
      return await fn();
    } finally {
      clearInterval(heartbeat);
      await releaseLockFile(lockPath, ino);
    }
  }

  async #acquire(lockPath: string): Promise<number> {
    const deadline = Date.now() + this.#timeoutMs;
    let delayMs = 1;
    for (;;) {
      try {
        return await createLockFile(lockPath);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') {
          throw new GraftError(this.#errorCode, `Cannot create lock file ${lockPath}: ${errorMessage(err)}`, {
            cause: err,
          });
        }
      }
      await breakIfStale(lockPath, this.#staleMs);
      if (Date.now() >= deadline) {
        throw new GraftError(
          this.#errorCode,
          `Timed out after ${this.#timeoutMs} ms waiting for lock ${lockPath}; another process holds it. ` +
            `If no Graft process is running, delete the file.`,
        );
      }
      // Jitter keeps processes that collided from colliding again in step.
      await sleep(delayMs + Math.random() * delayMs);
      delayMs = Math.min(delayMs * 2, 50);
    }
  }
}

/** Creates the lock file exclusively and returns its inode, which identifies this holder's lock. */
async function createLockFile(lockPath: string): Promise<number> {
  const handle = await open(lockPath, 'wx');
  try {
    await handle.writeFile(`${HOLDER}\n`);
    return (await handle.stat()).ino;
  } catch (err) {
    await unlink(lockPath).catch(() => {});
    throw err;
  } finally {
    await handle.close();
  }
}

async function releaseLockFile(lockPath: string, ino: number): Promise<void> {
  try {
    // Only remove our own lock: if ours was broken as stale, the file there now belongs to someone else.
    if ((await stat(lockPath)).ino === ino) await unlink(lockPath);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

/**
 * Whether the lock file names a holder that is certainly gone: a process of this host (not this process) that
 * no longer exists. Anything else (another host, an unreadable or half-written file, a live or unknown process)
 * is left to the mtime rule.
 */
async function holderIsGone(lockPath: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch {
    return false;
  }
  const match = /^(\S+) (\d+)\n$/.exec(text);
  if (!match || match[1] !== hostname()) return false;
  const pid = Number(match[2]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    // ESRCH: no such process. (EPERM: it exists, owned by another user.)
    return errnoCode(err) === 'ESRCH';
  }
}

async function breakIfStale(lockPath: string, staleMs: number): Promise<void> {
  let seen: Awaited<ReturnType<typeof stat>>;
  try {
    seen = await stat(lockPath);
  } catch {
    return;
  }
  if (Date.now() - seen.mtimeMs < staleMs && !(await holderIsGone(lockPath))) return;
  // Rename, not unlink: rename is atomic, and afterwards we can check what we moved. Two breakers racing
  // on the same stale lock may otherwise delete the fresh lock the faster one has just taken.
  const grave = `${lockPath}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(lockPath, grave);
  } catch {
    return;
  }
  try {
    if ((await stat(grave)).ino !== seen.ino) {
      // We moved a live lock taken after the stale one was broken: put it back (link fails if taken again).
      await link(grave, lockPath).catch(() => {});
    }
  } finally {
    await unlink(grave).catch(() => {});
  }
}

/**
 * Writes `data` to `path` atomically: a temp file in the same directory (so rename never crosses file
 * systems), fsync, rename over the target, fsync the directory. Readers see the old file or the new one.
 * The directory must exist. On failure the temp file is removed and the error rethrown.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const temp = await writeTempFile(dirname(path), data);
  try {
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Writes and fsyncs a `.tmp-<random>` file in `dir` and returns its path; publish it with `rename`. */
export async function writeTempFile(dir: string, data: Uint8Array | string): Promise<string> {
  const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
  await handle.close();
  return temp;
}

/**
 * The text (trimmed) of a secret file, mode 0600: on first use `create()`'s value is written to it. When another
 * process creates the file first, theirs is used. `created` says whether this call wrote it.
 */
export async function readOrCreateSecretFile(
  file: string,
  create: () => string,
): Promise<{ value: string; created: boolean }> {
  const read = async () => (await readFile(file, 'utf8')).trim();
  try {
    return { value: await read(), created: false };
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const value = create();
  try {
    await writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return { value, created: true };
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
  return { value: await read(), created: false };
}

/** Makes a rename in `dir` durable; a no-op where directories cannot be opened for sync. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL') throw err;
  } finally {
    await handle?.close();
  }
}

/** The `code` of a Node.js system error (`'ENOENT'`, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
