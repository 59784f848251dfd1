import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolveHubFiles } from '../src/engine/backbones/hub.js';
import {
  embedTexts,
  loadTextBackbone,
  OPTIONAL_TEXT_BACKBONE_PATHS,
  REQUIRED_TEXT_BACKBONE_PATHS,
  readTextBackboneDir,
} from '../src/engine/backbones/text.js';
import { OnnxSession } from '../src/runtime/onnx.js';
import { rejection } from './support/fixtures.js';
import { createTinyBertLayout } from './support/tiny-bert.js';

const COMMIT = 'a'.repeat(40);
const TOKEN = 'hf_test_token';
// Files the Hub keeps in LFS: it answers their /resolve/ URL with a redirect to the CDN, like the real Hub.
const LFS = new Set(['onnx/model.onnx']);

interface Logged {
  server: 'hub' | 'cdn';
  url: string;
  authorization: string | undefined;
}

/**
 * A stand-in for huggingface.co on 127.0.0.1: `/{org}/{repo}/resolve/{rev}/{path}` with the Hub's headers and
 * error codes, and a second server (another origin) as the CDN that LFS files are redirected to.
 */
async function startFakeHub() {
  const layout = Object.fromEntries(
    Object.entries(createTinyBertLayout({ seed: 42 })).map(([p, c]) => [p, Buffer.from(c)]),
  );
  const log: Logged[] = [];
  const blobs = new Map<string, Buffer>();
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.byteLength}\0`).update(b).digest('hex');

  const cdn = http.createServer((req, res) => {
    log.push({ server: 'cdn', url: req.url ?? '', authorization: req.headers.authorization });
    const blob = blobs.get(new URL(req.url ?? '/', 'http://cdn').pathname.slice(1));
    if (!blob) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': blob.byteLength, etag: '"s3-etag-is-not-a-sha"' }).end(blob);
  });
  await listen(cdn);
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  const hub = http.createServer((req, res) => {
    log.push({ server: 'hub', url: req.url ?? '', authorization: req.headers.authorization });
    const match = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    const fail = (status: number, code?: string) =>
      void res.writeHead(status, code ? { 'x-error-code': code } : {}).end(JSON.stringify({ error: code }));
    if (!match) return fail(404);
    const [, org, name, revision, file] = match.map((m) => decodeURIComponent(m ?? ''));
    const repo = `${org}/${name}`;
    const auth = req.headers.authorization;
    if (repo === 'graft-test/down') return fail(503);
    if (repo === 'graft-test/gated') {
      if (!auth) return fail(401, 'GatedRepo');
      if (auth !== `Bearer ${TOKEN}`) return fail(403, 'GatedRepo');
    } else if (!['graft-test/tiny-bert', 'graft-test/corrupt', 'graft-test/no-pooling'].includes(repo)) {
      // The Hub answers 401 for a repository that does not exist, so as not to reveal private ones.
      return fail(401, 'RepoNotFound');
    }
    if (revision !== 'main' && revision !== COMMIT) return fail(404, 'RevisionNotFound');
    let content = layout[file as string];
    if (!content || (repo === 'graft-test/no-pooling' && file === '1_Pooling/config.json')) {
      return fail(404, 'EntryNotFound');
    }
    const headers: Record<string, string | number> = { 'x-repo-commit': COMMIT };
    if (LFS.has(file as string)) {
      const hash = sha256(content);
      // A corrupt CDN copy: the Hub states the real sha256, the CDN serves other bytes.
      blobs.set(
        hash,
        repo === 'graft-test/corrupt' ? Buffer.concat([content, Buffer.from('junk')]) : content,
      );
      headers['x-linked-etag'] = `"${hash}"`;
      headers['x-linked-size'] = content.byteLength;
      headers.etag = `"${hash}"`;
      headers.location = `${cdnUrl}/${hash}?X-Amz-Signature=fake`;
      return void res.writeHead(302, headers).end();
    }
    if (repo === 'graft-test/corrupt') content = Buffer.concat([content, Buffer.from(' ')]);
    headers.etag = `"${gitSha1(layout[file as string] as Buffer)}"`;
    headers['content-length'] = content.byteLength;
    res.writeHead(200, headers).end(content);
  });
  await listen(hub);
  const endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  return {
    endpoint,
    log,
    hubRequests: () => log.filter((l) => l.server === 'hub').length,
    close: async () => {
      await Promise.all([close(hub), close(cdn)]);
    },
  };
}

const listen = (server: http.Server) =>
  new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
const close = (server: http.Server) =>
  new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

let fakeHub: Awaited<ReturnType<typeof startFakeHub>>;
let cacheDir: string;
const textLayout = { files: REQUIRED_TEXT_BACKBONE_PATHS, optionalFiles: OPTIONAL_TEXT_BACKBONE_PATHS };

beforeAll(async () => {
  fakeHub = await startFakeHub();
});
afterAll(async () => {
  await fakeHub.close();
});
beforeEach(async () => {
  cacheDir = await mkdtemp(path.join(tmpdir(), 'graft-hub-'));
  fakeHub.log.length = 0;
  return () => rm(cacheDir, { recursive: true, force: true });
});

describe('Hugging Face Hub download', () => {
  it('downloads the layout (following the CDN redirect) and loads the same backbone as the directory', async () => {
    // given
    const { endpoint } = fakeHub;
    // when
    const result = await resolveHubFiles({ repo: 'graft-test/tiny-bert', endpoint, cacheDir, ...textLayout });
    // then: every file landed under {cacheDir}/{org--name}/{revision}/
    expect(result.dir).toBe(path.join(cacheDir, 'graft-test--tiny-bert', 'main'));
    expect(result.downloaded.sort()).toEqual(
      [...REQUIRED_TEXT_BACKBONE_PATHS, ...OPTIONAL_TEXT_BACKBONE_PATHS].sort(),
    );
    expect(result.missing).toEqual([]);
    expect(result.commit).toBe(COMMIT);
    expect(result.paths['onnx/model.onnx']).toBe(path.join(result.dir, 'onnx', 'model.onnx'));
    expect(fakeHub.log.some((l) => l.server === 'cdn')).toBe(true);
    expect((await listFiles(result.dir)).some((f) => f.endsWith('.part'))).toBe(false);

    const fromHub = await loadTextBackbone(await readTextBackboneDir(result.dir), { name: 'tiny-bert' });
    const layout = createTinyBertLayout({ seed: 42 });
    const direct = await loadTextBackbone(
      {
        model: layout['onnx/model.onnx'] as Uint8Array,
        tokenizerJson: layout['tokenizer.json'] as string,
        tokenizerConfigJson: layout['tokenizer_config.json'] as string,
        configJson: layout['config.json'] as string,
        poolingConfigJson: layout['1_Pooling/config.json'] as string,
        modulesJson: layout['modules.json'] as string,
        sentenceBertConfigJson: layout['sentence_bert_config.json'] as string,
      },
      { name: 'tiny-bert' },
    );
    expect(fromHub.config).toEqual(direct.config);
    const texts = ['The cat sat on the mat.', 'Hello world!', 'refund please'];
    const session = await OnnxSession.create(fromHub.graph);
    try {
      const a = await embedTexts(fromHub, session, texts);
      const b = await embedTexts(direct, session, texts);
      expect(a).toEqual(b);
    } finally {
      await session.dispose();
    }
  });

  it('a second call is served from the cache without a request', async () => {
    const options = { repo: 'graft-test/tiny-bert', endpoint: fakeHub.endpoint, cacheDir, ...textLayout };
    await resolveHubFiles(options);
    const before = fakeHub.log.length;
    const again = await resolveHubFiles(options);
    expect(fakeHub.log.length).toBe(before);
    expect(again.downloaded).toEqual([]);
    expect(again.commit).toBe(COMMIT);
    expect(Object.keys(again.paths)).toHaveLength(7);
  });

  it('remembers an optional file the repository does not have', async () => {
    const options = { repo: 'graft-test/no-pooling', endpoint: fakeHub.endpoint, cacheDir, ...textLayout };
    const first = await resolveHubFiles(options);
    expect(first.missing).toEqual(['1_Pooling/config.json']);
    const before = fakeHub.log.length;
    const second = await resolveHubFiles(options);
    expect(fakeHub.log.length).toBe(before);
    expect(second.missing).toEqual(['1_Pooling/config.json']);
    // Without a pooling config a text backbone pools by the mean.
    const backbone = await loadTextBackbone(await readTextBackboneDir(second.dir), { name: 'no-pooling' });
    expect(backbone.config.pooling).toBe('mean');
  });

  it('offline mode reads the cache only, and fails naming the missing files and how to fill the cache', async () => {
    const base = { repo: 'graft-test/tiny-bert', endpoint: fakeHub.endpoint, ...textLayout };
    // given an empty cache
    const err = await rejection(resolveHubFiles({ ...base, cacheDir, offline: true }));
    expect(err.code).toBe('BACKBONE_NOT_FOUND');
    expect(err.message).toContain('onnx/model.onnx, tokenizer.json');
    expect(err.message).toContain('HF_HUB_OFFLINE');
    expect(err.message).toContain(path.join(cacheDir, 'graft-test--tiny-bert', 'main'));
    expect(fakeHub.log).toEqual([]);
    // given a filled cache
    await resolveHubFiles({ ...base, cacheDir });
    const before = fakeHub.log.length;
    const offline = await resolveHubFiles({ ...base, cacheDir, offline: true });
    expect(fakeHub.log.length).toBe(before);
    expect(Object.keys(offline.paths).sort()).toEqual(
      [...REQUIRED_TEXT_BACKBONE_PATHS, ...OPTIONAL_TEXT_BACKBONE_PATHS].sort(),
    );
  });

  it('a gated repository needs a token: 401 without one, 403 with one that has no access', async () => {
    const base = { repo: 'graft-test/gated', endpoint: fakeHub.endpoint, cacheDir, ...textLayout };
    const noToken = await rejection(resolveHubFiles(base));
    expect(noToken.code).toBe('BACKBONE_NOT_FOUND');
    expect(noToken.message).toMatch(/gated repository.*HF_TOKEN/);
    const wrongToken = await rejection(resolveHubFiles({ ...base, token: 'hf_other' }));
    expect(wrongToken.message).toMatch(/gated repository and the token given has no access/);
    expect(await listFiles(cacheDir)).toEqual([]);
  });

  it('sends the token to the Hub and never to the CDN it redirects to', async () => {
    const result = await resolveHubFiles({
      repo: 'graft-test/gated',
      endpoint: fakeHub.endpoint,
      cacheDir,
      token: TOKEN,
      ...textLayout,
    });
    expect(result.downloaded).toHaveLength(7);
    const hub = fakeHub.log.filter((l) => l.server === 'hub');
    const cdn = fakeHub.log.filter((l) => l.server === 'cdn');
    expect(hub.every((l) => l.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((l) => l.authorization === undefined)).toBe(true);
  });

  it('a missing repository, revision or file fails with BACKBONE_NOT_FOUND saying which', async () => {
    const base = { endpoint: fakeHub.endpoint, cacheDir, ...textLayout };
    const repo = await rejection(resolveHubFiles({ ...base, repo: 'graft-test/nope' }));
    expect(repo.code).toBe('BACKBONE_NOT_FOUND');
    expect(repo.message).toMatch(/repository graft-test\/nope was not found.*HF_TOKEN/);
    const revision = await rejection(
      resolveHubFiles({ ...base, repo: 'graft-test/tiny-bert', revision: 'v9' }),
    );
    expect(revision.message).toContain('The revision "v9" does not exist');
    const file = await rejection(
      resolveHubFiles({
        ...base,
        repo: 'graft-test/tiny-bert',
        files: ['onnx/model_O4.onnx'],
        optionalFiles: [],
      }),
    );
    expect(file.message).toContain('has no file onnx/model_O4.onnx');
    expect(file.details).toMatchObject({ status: 404, hubError: 'EntryNotFound' });
  });

  it('pins a commit: files land under that revision', async () => {
    const result = await resolveHubFiles({
      repo: 'graft-test/tiny-bert',
      revision: COMMIT,
      endpoint: fakeHub.endpoint,
      cacheDir,
      files: ['tokenizer.json'],
    });
    expect(result.dir).toBe(path.join(cacheDir, 'graft-test--tiny-bert', COMMIT));
    expect(fakeHub.log[0]?.url).toBe(`/graft-test/tiny-bert/resolve/${COMMIT}/tokenizer.json`);
  });

  it('a download that does not match the Hub checksum fails and leaves nothing in the cache', async () => {
    const base = { repo: 'graft-test/corrupt', endpoint: fakeHub.endpoint, cacheDir };
    const lfs = await rejection(resolveHubFiles({ ...base, files: ['onnx/model.onnx'] }));
    expect(lfs.code).toBe('STORAGE_UNAVAILABLE');
    expect(lfs.message).toMatch(/corrupted file \(\d+ bytes instead of \d+\)/);
    const small = await rejection(resolveHubFiles({ ...base, files: ['config.json'] }));
    expect(small.message).toMatch(/corrupted file \(\d+ bytes instead of \d+\)|git blob sha1/);
    expect(await listFiles(cacheDir)).toEqual([]);
  });

  it('an unavailable Hub fails with STORAGE_UNAVAILABLE; bad names fail before any request', async () => {
    const down = await rejection(
      resolveHubFiles({
        repo: 'graft-test/down',
        endpoint: fakeHub.endpoint,
        cacheDir,
        files: ['config.json'],
      }),
    );
    expect(down.code).toBe('STORAGE_UNAVAILABLE');
    expect(down.message).toContain('answered 503');
    const unreachable = await rejection(
      resolveHubFiles({
        repo: 'graft-test/tiny-bert',
        endpoint: 'http://127.0.0.1:9',
        cacheDir,
        files: ['config.json'],
      }),
    );
    expect(unreachable.code).toBe('STORAGE_UNAVAILABLE');
    fakeHub.log.length = 0;
    for (const bad of [
      { repo: '../etc', files: ['config.json'] },
      { repo: 'a--b/c', files: ['config.json'] },
      { repo: 'org/name', revision: '../main', files: ['config.json'] },
      { repo: 'org/name', files: ['../../secret'] },
      { repo: 'org/name', files: ['/abs'] },
    ]) {
      const err = await rejection(resolveHubFiles({ endpoint: fakeHub.endpoint, cacheDir, ...bad }));
      expect(err.code).toBe('INVALID_OPTIONS');
    }
    expect(fakeHub.log).toEqual([]);
  });
});
