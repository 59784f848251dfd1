import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DirObjectStore } from '../src/adapters/local/dir-object-store.js';
import type { GraftError } from '../src/errors.js';
import { rejection, tempDir } from './support/fixtures.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const md5Etag = (content: string | Uint8Array) => `"${createHash('md5').update(content).digest('hex')}"`;
const text = (body: Uint8Array) => new TextDecoder().decode(body);

async function newStore() {
  const root = path.join(await tempDir('graft-store-'), 'store');
  return { root, store: new DirObjectStore(root) };
}

describe('DirObjectStore', () => {
  it('round-trips text and bytes, with the MD5 ETag S3 gives', async () => {
    // given
    const { store } = await newStore();
    const binary = Uint8Array.from({ length: 256 }, (_, i) => i);

    // when
    const first = await store.put('tasks/support/task.json', '{"backbone":"hash-ngrams"}');
    const second = await store.put('cache/embeddings/abc/def.f32', binary);

    // then
    expect(first.etag).toBe(md5Etag('{"backbone":"hash-ngrams"}'));
    expect(first.etag).toMatch(/^"[0-9a-f]{32}"$/);
    const got = await store.get('tasks/support/task.json');
    expect(text(got.body)).toBe('{"backbone":"hash-ngrams"}');
    expect(got.etag).toBe(first.etag);
    const found = await store.find('cache/embeddings/abc/def.f32');
    expect(found?.body).toEqual(binary);
    expect(found?.etag).toBe(second.etag);
    expect(second.etag).toBe(md5Etag(binary));
  });

  it('overwrites, deletes, and treats deleting a missing key as done', async () => {
    const { store } = await newStore();
    await store.put('jobs/j1.json', 'one');
    const { etag } = await store.put('jobs/j1.json', 'two');
    expect(etag).toBe(md5Etag('two'));
    expect(text((await store.get('jobs/j1.json')).body)).toBe('two');

    await store.delete('jobs/j1.json');
    await store.delete('jobs/j1.json');
    await store.delete('never/was/there.json');
    expect(await store.find('jobs/j1.json')).toBeUndefined();
  });

  it('get throws OBJECT_NOT_FOUND naming the key; find returns undefined', async () => {
    const { store } = await newStore();
    const err = await rejection(store.get('tasks/nope/task.json'));
    expect(err.code).toBe('OBJECT_NOT_FOUND');
    expect(err.status).toBe(404);
    expect(err.message).toContain('tasks/nope/task.json');
    expect(await store.find('tasks/nope/task.json')).toBeUndefined();
  });

  it('lists keys by prefix like S3: sorted, and the prefix may end mid-segment', async () => {
    // given
    const { store } = await newStore();
    const keys = [
      'tasks/b/task.json',
      'tasks/a/task.json',
      'tasks/a/models/v1/card.json',
      'tasks/ab/task.json',
      'jobs/j1.json',
      'tasks-index.json',
    ];
    for (const key of keys) await store.put(key, key);

    // then
    expect(await store.list('')).toEqual([...keys].sort());
    expect(await store.list('tasks/a')).toEqual([
      'tasks/a/models/v1/card.json',
      'tasks/a/task.json',
      'tasks/ab/task.json',
    ]);
    expect(await store.list('tasks/a/')).toEqual(['tasks/a/models/v1/card.json', 'tasks/a/task.json']);
    expect(await store.list('tasks')).toEqual([
      'tasks-index.json',
      'tasks/a/models/v1/card.json',
      'tasks/a/task.json',
      'tasks/ab/task.json',
      'tasks/b/task.json',
    ]);
    expect(await store.list('tasks/a/task.json')).toEqual(['tasks/a/task.json']);
    expect(await store.list('nothing/')).toEqual([]);
  });

  it('lists nothing before the root directory exists', async () => {
    const { store } = await newStore();
    expect(await store.list('')).toEqual([]);
    expect(await store.find('a.json')).toBeUndefined();
  });

  describe('conditional writes', () => {
    it('ifNoneMatch "*" writes only when the key is free', async () => {
      const { store } = await newStore();
      await store.put('tasks/a/task.json', 'first', { ifNoneMatch: '*' });

      const err = await rejection(store.put('tasks/a/task.json', 'second', { ifNoneMatch: '*' }));

      expect(err.code).toBe('PRECONDITION_FAILED');
      expect(err.status).toBe(412);
      expect(text((await store.get('tasks/a/task.json')).body)).toBe('first');
    });

    it('ifMatch writes only over the matching ETag', async () => {
      // given
      const { store } = await newStore();
      const { etag: etag0 } = await store.put('tasks/a/current.json', '{"version":"v1"}');

      // when
      const { etag: etag1 } = await store.put('tasks/a/current.json', '{"version":"v2"}', { ifMatch: etag0 });
      const stale = await rejection(
        store.put('tasks/a/current.json', '{"version":"v3"}', { ifMatch: etag0 }),
      );

      // then
      expect(stale.code).toBe('PRECONDITION_FAILED');
      expect(stale.message).toContain(etag1);
      expect(text((await store.get('tasks/a/current.json')).body)).toBe('{"version":"v2"}');
      // an unquoted ETag is the same ETag
      await store.put('tasks/a/current.json', '{"version":"v4"}', { ifMatch: etag1.replaceAll('"', '') });
    });

    it('ifMatch on a missing key fails', async () => {
      const { store } = await newStore();
      const err = await rejection(store.put('tasks/a/current.json', 'x', { ifMatch: md5Etag('x') }));
      expect(err.code).toBe('PRECONDITION_FAILED');
      expect(await store.find('tasks/a/current.json')).toBeUndefined();
    });

    it('lets exactly one of 20 concurrent ifMatch writes win', async () => {
      // given
      const { root, store } = await newStore();
      const { etag: etag0 } = await store.put('tasks/a/current.json', 'v0');

      // when
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          store.put('tasks/a/current.json', `v${i + 1}`, { ifMatch: etag0 }),
        ),
      );

      // then
      const won = results.flatMap((result, i) => (result.status === 'fulfilled' ? [`v${i + 1}`] : []));
      expect(won).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected')
          expect((result.reason as GraftError).code).toBe('PRECONDITION_FAILED');
      }
      expect(text((await store.get('tasks/a/current.json')).body)).toBe(won[0]);
      // no temp or lock file is left behind
      expect(await readdir(path.join(root, 'tasks/a'))).toEqual(['current.json']);
    });

    it('lets exactly one of 20 concurrent ifNoneMatch writes win', async () => {
      const { store } = await newStore();
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => store.put('jobs/j1.json', `writer ${i}`, { ifNoneMatch: '*' })),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    });

    it('lets exactly one process win when several race', async () => {
      // given: 4 processes, each making 5 conditional writes of each kind once told to go
      const dir = await tempDir('graft-race-');
      const root = path.join(dir, 'store');
      const store = new DirObjectStore(root);
      const { etag: etag0 } = await store.put('tasks/a/current.json', 'v0');
      const script = path.join(dir, 'racer.mts');
      const storeModule = pathToFileURL(path.join(REPO_ROOT, 'src/adapters/local/dir-object-store.ts')).href;
      await writeFile(
        script,
        `import { DirObjectStore } from ${JSON.stringify(storeModule)};
const [root, etag0] = process.argv.slice(2);
const store = new DirObjectStore(root);
process.stdout.write('ready\\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy();
const attempt = (promise, body) => promise.then(() => body, (err) => err.code);
const results = await Promise.all(
  Array.from({ length: 5 }, (_, i) => [
    attempt(store.put('tasks/a/current.json', 'pid ' + process.pid + ' #' + i, { ifMatch: etag0 }), 'pid ' + process.pid + ' #' + i),
    attempt(store.put('jobs/j1.json', 'pid ' + process.pid + ' #' + i, { ifNoneMatch: '*' }), 'pid ' + process.pid + ' #' + i),
  ]).flat(),
);
process.stdout.write(JSON.stringify(results) + '\\n');
`,
      );
      const children = Array.from({ length: 4 }, () =>
        spawn(process.execPath, ['--import', 'tsx', script, root, etag0], { cwd: REPO_ROOT }),
      );

      // when
      await Promise.all(children.map((child) => firstLine(child)));
      for (const child of children) child.stdin.end('go\n');
      const outputs = await Promise.all(children.map((child) => lastLine(child)));

      // then
      const results = outputs.flatMap((line) => JSON.parse(line) as string[]);
      const ifMatch = results.filter((_, i) => i % 2 === 0);
      const ifNoneMatch = results.filter((_, i) => i % 2 === 1);
      for (const [key, attempts] of [
        ['tasks/a/current.json', ifMatch],
        ['jobs/j1.json', ifNoneMatch],
      ] as const) {
        const winners = attempts.filter((result) => result !== 'PRECONDITION_FAILED');
        expect(attempts).toHaveLength(20);
        expect(winners).toHaveLength(1);
        expect(text((await store.get(key)).body)).toBe(winners[0]);
      }
    });
  });

  it('rejects keys that could escape the root or clash with its own files', async () => {
    const { root, store } = await newStore();
    const bad = [
      '',
      '../escape.json',
      'tasks/../../escape.json',
      '/etc/passwd',
      'tasks//task.json',
      'tasks/',
      'tasks\\..\\escape.json',
      'tasks/a\0.json',
      './tasks/a.json',
      'tasks/.tmp-123',
      'tasks/.lock-current.json',
      `tasks/${'x'.repeat(201)}`,
    ];
    for (const key of bad) {
      for (const attempt of [store.put(key, 'x'), store.get(key), store.find(key), store.delete(key)]) {
        const err = await rejection(attempt);
        expect(err.code, key).toBe('BAD_REQUEST');
        expect(err.message).toMatch(/^Invalid object key/);
      }
    }
    for (const prefix of ['../', 'a/../b', '/abs', 'a\\b']) {
      expect((await rejection(store.list(prefix))).code).toBe('BAD_REQUEST');
    }
    expect(await readdir(path.dirname(root))).toEqual([]);
  });

  it('never shows a temp file left by a crashed write, nor a lock file', async () => {
    // given: a write that crashed after writing part of its temp file, and a crashed lock holder
    const { root, store } = await newStore();
    await store.put('tasks/a/current.json', 'v1');
    await writeFile(path.join(root, 'tasks/a/.tmp-0123456789abcdef'), 'v2 half writ');
    await writeFile(path.join(root, '.tmp-fedcba9876543210'), '');
    const lock = path.join(root, 'tasks/a/.lock-current.json');
    await writeFile(lock, '99999\n');
    const longAgo = new Date(Date.now() - 120_000);
    await utimes(lock, longAgo, longAgo);

    // then
    expect(await store.list('')).toEqual(['tasks/a/current.json']);
    expect(text((await store.get('tasks/a/current.json')).body)).toBe('v1');
    // the stale lock is broken, and writing goes on
    const { etag } = await store.put('tasks/a/current.json', 'v2', { ifMatch: md5Etag('v1') });
    expect(etag).toBe(md5Etag('v2'));
    expect(await store.list('tasks/')).toEqual(['tasks/a/current.json']);
  });

  it('waits for a lock held by another process', async () => {
    // given: a fresh lock file, as another process holds while it writes
    const { root, store } = await newStore();
    await store.put('tasks/a/current.json', 'v1');
    const lock = path.join(root, 'tasks/a/.lock-current.json');
    await writeFile(lock, '99999\n');

    // when
    let done = false;
    const write = store.put('tasks/a/current.json', 'v2').then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 150));

    // then
    expect(done).toBe(false);
    expect(text((await store.get('tasks/a/current.json')).body)).toBe('v1');
    await unlink(lock);
    await write;
    expect(text((await store.get('tasks/a/current.json')).body)).toBe('v2');
  });

  it('replaces content atomically: a reader sees the old or the new content, never a part', async () => {
    const { root, store } = await newStore();
    const big = 'x'.repeat(1 << 20);
    await store.put('blob', 'small');
    const reads: string[] = [];
    const writer = store.put('blob', big);
    while (reads.length < 50) reads.push(await readFile(path.join(root, 'blob'), 'utf8'));
    await writer;
    for (const read of reads) expect(read === 'small' || read === big).toBe(true);
  });

  it('reports a key that clashes with a directory as CONFLICT', async () => {
    const { store } = await newStore();
    await store.put('a/b.json', 'x');
    expect((await rejection(store.put('a', 'y'))).code).toBe('CONFLICT');
    await store.put('c', 'x');
    expect((await rejection(store.put('c/d.json', 'y'))).code).toBe('CONFLICT');
    expect(await store.find('a')).toBeUndefined();
    expect(await store.find('c/d.json')).toBeUndefined();
  });

  it('wraps other file-system errors as STORAGE_UNAVAILABLE with the cause', async () => {
    // given: a symlink loop under the root
    const { root, store } = await newStore();
    await mkdir(root, { recursive: true });
    await symlink(path.join(root, 'loop'), path.join(root, 'loop'));

    // when
    const err = await rejection(store.get('loop/x.json'));

    // then
    expect(err.code).toBe('STORAGE_UNAVAILABLE');
    expect(err.status).toBe(503);
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ELOOP');
  });
});

function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk;
    });
    const onData = (chunk: Buffer) => {
      out += chunk;
      const newline = out.indexOf('\n');
      if (newline >= 0) {
        child.stdout.off('data', onData);
        resolve(out.slice(0, newline));
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before answering: ${err}`)));
  });
}

function lastLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk;
    });
    child.once('close', (code) => {
      if (code === 0) resolve(out.trim().split('\n').at(-1) ?? '');
      else reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
}
