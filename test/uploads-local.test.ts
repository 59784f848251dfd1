import { stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HmacSignedUrls, uploadSecretFromDataDir } from '../src/adapters/local/hmac-signed-urls.js';
import { type LocalPlatform, startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';
import { silentLogger } from '../src/core/logger.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { client, expectError } from './support/http.js';

const ADMIN_KEY = 'local-uploads-admin-key-0123456789';
const INCOMING_KEY = /^tasks\/drop\/incoming\/\d{8}t\d{6}z-[0-9a-f]{8}-drop\.jsonl$/;

async function start(dataDir: string, env: Record<string, string> = {}, worker = true) {
  const platform = await startLocalPlatform(
    loadLocalConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      GRAFT_DATA_DIR: dataDir,
      GRAFT_API_KEY: ADMIN_KEY,
      ...env,
    }),
    { log: silentLogger, heartbeatMs: 200, worker },
  );
  const api = client((p, init) => fetch(`${platform.url}${p}`, init), ADMIN_KEY);
  // One strategy, no search: the training these tests wait for stays short.
  await api.put('/v1/tasks/drop', { strategy: 'logistic' });
  return { platform, api };
}

/** A PUT to a signed URL the way a client without an API key sends it: plain fetch, no Authorization. */
async function putFile(url: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  const response = await fetch(url, { method: 'PUT', body, headers });
  return { status: response.status, body: (await response.json()) as any };
}

async function withPlatform(
  env: Record<string, string>,
  test: (ctx: { platform: LocalPlatform; api: ReturnType<typeof client>; dataDir: string }) => Promise<void>,
  { worker = true } = {},
) {
  const dataDir = await tempDir();
  const { platform, api } = await start(dataDir, env, worker);
  try {
    await test({ platform, api, dataDir });
  } finally {
    await platform.close();
  }
}

describe('direct uploads on the local server (signed URLs to PUT /v1/uploads/{token})', () => {
  it(
    'signs an upload URL to this server; a plain PUT stores, ingests and trains on the file',
    () =>
      withPlatform({}, async ({ platform, api, dataDir }) => {
        // given
        const ticket = await api.post('/v1/tasks/drop/uploads', { file: 'drop.jsonl' });
        expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
        expect(ticket.body).toMatchObject({ method: 'PUT', key: expect.stringMatching(INCOMING_KEY) });
        expect(ticket.body.url.startsWith(`${platform.url}/v1/uploads/`)).toBe(true);
        expect(Date.parse(ticket.body.expiresAt) - Date.now()).toBeGreaterThan(890_000);
        // the signing secret was created in the data dir, readable by its owner only
        expect((await stat(path.join(dataDir, 'upload-secret'))).mode & 0o777).toBe(0o600);

        // when
        const uploaded = await putFile(ticket.body.url, toJsonl(makeTextDataset()));

        // then: a dataset version named by its source, a job that trains, nothing left in incoming/
        expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
        expect(uploaded.body).toMatchObject({ key: ticket.body.key, rows: 36, existing: false });
        expect(await api.waitForJob(uploaded.body.jobId, 110_000)).toMatchObject({ status: 'succeeded' });
        const { body } = await api.get('/v1/tasks/drop/datasets');
        expect(body.datasets).toMatchObject([
          { id: uploaded.body.datasetId, source: `incoming/${path.basename(ticket.body.key)}` },
        ]);
        expect(await platform.deps.store.list(storageKeys.incomingPrefix('drop'))).toEqual([]);
        // and the model file still streams from this server (no redirect locally)
        const model = await fetch(`${platform.url}/v1/tasks/drop/models/v1/model.onnx`, {
          headers: { authorization: `Bearer ${ADMIN_KEY}` },
          redirect: 'manual',
        });
        expect(model.status).toBe(200);
        expect((await model.arrayBuffer()).byteLength).toBeGreaterThan(1000);
      }),
    120_000,
  );

  it('refuses a tampered, foreign or expired token with 403 and a code, before storing anything', () =>
    withPlatform(
      {},
      async ({ platform, api, dataDir }) => {
        // given a valid URL, and its token
        const ticket = await api.post('/v1/tasks/drop/uploads', { file: 'drop.jsonl' });
        const url = new URL(ticket.body.url);
        const token = url.pathname.slice('/v1/uploads/'.length);
        const [payload = '', mac = ''] = token.split('.');
        const at = (t: string) => `${platform.url}/v1/uploads/${t}`;
        const flip = (s: string, i: number) => `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
        const data = toJsonl(makeTextDataset());

        // when / then: an altered payload or MAC, a token signed with another secret, or no token at all
        const otherKey = Buffer.from(
          `${Math.floor(Date.now() / 1000) + 900}\ntasks/drop/incoming/x.jsonl`,
        ).toString('base64url');
        const foreign = await new HmacSignedUrls(Buffer.alloc(32, 7)).uploadUrl(
          'tasks/drop/incoming/x.jsonl',
          {
            expiresInSeconds: 900,
            origin: platform.url,
          },
        );
        for (const bad of [
          at(`${flip(payload, 3)}.${mac}`),
          at(`${payload}.${flip(mac, 5)}`),
          at(`${otherKey}.${mac}`),
          at(`${payload}.${mac}.x`),
          at(payload),
          at('nonsense'),
          foreign.url,
        ]) {
          expectError(await putFile(bad, data), 403, 'UPLOAD_URL_INVALID');
        }
        // a genuine signature (the server's own secret) whose time has passed
        const secret = await uploadSecretFromDataDir(dataDir);
        const anHourAgo = new HmacSignedUrls(secret, { now: () => Date.now() - 3_600_000 });
        const expired = await anHourAgo.uploadUrl('tasks/drop/incoming/late.jsonl', {
          expiresInSeconds: 900,
          origin: platform.url,
        });
        const refused = await putFile(expired.url, data);
        expectError(refused, 403, 'UPLOAD_URL_EXPIRED');
        expect(refused.body.error.message).toContain(expired.expiresAt);
        // a genuine signature for a key outside a drop zone
        const elsewhere = await new HmacSignedUrls(secret).uploadUrl(storageKeys.task('drop'), {
          expiresInSeconds: 900,
          origin: platform.url,
        });
        expectError(await putFile(elsewhere.url, data), 403, 'UPLOAD_URL_INVALID');
        // and the same signature, from the same secret, now: accepted (so only the time was wrong)
        const fresh = await new HmacSignedUrls(secret).uploadUrl('tasks/drop/incoming/late.jsonl', {
          expiresInSeconds: 900,
          origin: platform.url,
        });
        expect((await putFile(fresh.url, data)).status).toBe(201);
        // nothing from the refused requests was stored
        const { body } = await api.get('/v1/tasks/drop/datasets');
        expect(body.datasets).toHaveLength(1);
        expect(body.rejected).toEqual([]);
      },
      { worker: false },
    ));

  it('answers 413 to a body over GRAFT_MAX_UPLOAD_BYTES and stores none of it', () =>
    withPlatform(
      { GRAFT_MAX_UPLOAD_BYTES: '4096' },
      async ({ platform, api }) => {
        // given
        const ticket = await api.post('/v1/tasks/drop/uploads', { file: 'drop.jsonl' });
        const big = toJsonl(makeTextDataset({ perLabel: 40 }));
        expect(Buffer.byteLength(big)).toBeGreaterThan(4096);
        // when
        const response = await putFile(ticket.body.url, big);
        // and the same body streamed without a Content-Length
        const chunks = [big.slice(0, 3000), big.slice(3000)];
        const streamed = await fetch(ticket.body.url, {
          method: 'PUT',
          body: new ReadableStream({
            pull(controller) {
              const next = chunks.shift();
              if (next === undefined) controller.close();
              else controller.enqueue(new TextEncoder().encode(next));
            },
          }),
          duplex: 'half',
        } as RequestInit);
        // then
        expectError(response, 413, 'PAYLOAD_TOO_LARGE');
        expectError({ status: streamed.status, body: await streamed.json() }, 413, 'PAYLOAD_TOO_LARGE');
        expect(await platform.deps.store.list('tasks/drop/')).toEqual([storageKeys.task('drop')]);
      },
      { worker: false },
    ));

  it('answers the 4xx of a file that cannot become a dataset, and lists it under rejected', () =>
    withPlatform(
      {},
      async ({ platform, api }) => {
        // given
        const ticket = await api.post('/v1/tasks/drop/uploads', { file: 'broken.csv' });
        // when
        const response = await putFile(ticket.body.url, 'text,label\n"unclosed,a\n');
        // then
        expectError(response, 422, 'INVALID_DATASET');
        const { body } = await api.get('/v1/tasks/drop/datasets');
        expect(body.datasets).toEqual([]);
        expect(body.rejected).toMatchObject([
          { file: path.basename(ticket.body.key), error: { code: 'INVALID_DATASET' } },
        ]);
        expect(await platform.deps.store.list(storageKeys.incomingPrefix('drop'))).toEqual([]);
        // and a file with too few rows per label is refused the same way, with what to fix
        const small = await api.post('/v1/tasks/drop/uploads', { file: 'small.jsonl' });
        const tooSmall = await putFile(
          small.body.url,
          '{"text":"a","label":"x"}\n{"text":"b","label":"y"}\n',
        );
        expect(tooSmall.status).toBeGreaterThanOrEqual(400);
        expect(tooSmall.status).toBeLessThan(500);
        expect((await api.get('/v1/tasks/drop/datasets')).body.rejected).toHaveLength(2);
      },
      { worker: false },
    ));

  it('checks the file name and the key scope when signing, and keeps the secret across restarts', async () => {
    // given
    const dataDir = await tempDir();
    const first = await start(dataDir, {}, false);
    let url: string;
    try {
      for (const file of ['../x.jsonl', 'a/b.csv', 'a b.csv', 'data.txt', `${'a'.repeat(97)}.jsonl`]) {
        expectError(await first.api.post('/v1/tasks/drop/uploads', { file }), 400, 'INVALID_NAME');
      }
      expectError(await first.api.post('/v1/tasks/drop/uploads', {}), 400, 'INVALID_OPTIONS');
      expectError(await first.api.post('/v1/tasks/nope/uploads', { file: 'a.csv' }), 404, 'TASK_NOT_FOUND');
      const created = await first.api.post('/v1/keys', { scopes: ['predict'] });
      const predictOnly = client((p, init) => fetch(`${first.platform.url}${p}`, init), created.body.key);
      expectError(await predictOnly.post('/v1/tasks/drop/uploads', { file: 'a.csv' }), 403, 'FORBIDDEN');
      url = (await first.api.post('/v1/tasks/drop/uploads', { file: 'drop.jsonl' })).body.url;
    } finally {
      await first.platform.close();
    }
    // when the server restarts on the same data dir (and another port)
    const second = await start(dataDir, {}, false);
    try {
      const sameToken = `${second.platform.url}${new URL(url).pathname}`;
      // then a URL signed before the restart is still good
      expect((await putFile(sameToken, toJsonl(makeTextDataset()))).status).toBe(201);
    } finally {
      await second.platform.close();
    }
  });
});
