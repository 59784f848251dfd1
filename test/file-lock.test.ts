import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileLocks, readOrCreateSecretFile } from '../src/adapters/local/file-lock.js';
import { GraftError } from '../src/errors.js';
import { tempDir } from './support/fixtures.js';

/** Starts a process that idles until killed; `stop` kills it and waits for its exit. */
function idleProcess() {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid as number,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs an empty critical section and says how long taking the lock took, or the error code. */
async function take(locks: FileLocks, lockPath: string): Promise<{ ms: number; code?: string }> {
  const started = performance.now();
  try {
    await locks.run(lockPath, async () => {});
    return { ms: performance.now() - started };
  } catch (err) {
    return { ms: performance.now() - started, code: err instanceof GraftError ? err.code : String(err) };
  }
}

describe('FileLocks and a lock file left by a killed process', () => {
  // A fresh lock file (mtime now), so the 30 s staleness rule cannot be what breaks it.
  const locks = () => new FileLocks({ staleMs: 30_000, timeoutMs: 1_500 });

  it('breaks at once a lock whose holder was a process of this host that is gone', async () => {
    const dir = await tempDir();
    const lockPath = path.join(dir, '.lock-key');
    const dead = idleProcess();
    await dead.stop();
    await writeFile(lockPath, `${hostname()} ${dead.pid}\n`);
    const { ms, code } = await take(locks(), lockPath);
    expect(code).toBeUndefined();
    expect(ms).toBeLessThan(1_000);
  });

  it('waits for a lock whose holder is alive', async () => {
    const dir = await tempDir();
    const lockPath = path.join(dir, '.lock-key');
    const alive = idleProcess();
    try {
      await writeFile(lockPath, `${hostname()} ${alive.pid}\n`);
      const { code } = await take(locks(), lockPath);
      expect(code).toBe('STORAGE_UNAVAILABLE');
    } finally {
      await alive.stop();
    }
  });

  it("leaves another host's lock, and a lock that names no holder, to the staleness rule", async () => {
    const dir = await tempDir();
    const dead = idleProcess();
    await dead.stop();
    for (const [name, content] of [
      ['other-host', `another-${hostname()} ${dead.pid}\n`],
      ['half-written', ''],
      ['old-format', `${dead.pid}\n`],
    ]) {
      const lockPath = path.join(dir, `.lock-${name}`);
      await writeFile(lockPath, content as string);
      expect((await take(locks(), lockPath)).code, name).toBe('STORAGE_UNAVAILABLE');
      // ... which still breaks it once it is old
      expect(
        (await take(new FileLocks({ staleMs: 50, timeoutMs: 2_000 }), lockPath)).code,
        name,
      ).toBeUndefined();
    }
  });
});

describe('readOrCreateSecretFile', () => {
  it('creates the file once, mode 0600, and every caller, racing or later, reads the same value', async () => {
    // given no file yet
    const file = path.join(await tempDir('graft-secret-'), 'admin-key');
    let made = 0;
    const create = () => `secret-${++made}`;

    // when several callers race for it, and one comes later
    const racing = await Promise.all(Array.from({ length: 5 }, () => readOrCreateSecretFile(file, create)));
    const later = await readOrCreateSecretFile(file, create);

    // then exactly one wrote it, and all of them read what it wrote
    const value = racing.find((r) => r.created)?.value;
    expect(racing.filter((r) => r.created)).toHaveLength(1);
    expect(new Set([...racing, later].map((r) => r.value))).toEqual(new Set([value]));
    expect(later.created).toBe(false);
    expect(await readFile(file, 'utf8')).toBe(`${value}\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });
});
