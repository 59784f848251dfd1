import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalDeps } from '../src/adapters/local/platform.js';
import { createApp } from '../src/api/app.js';
import { openApiDocument } from '../src/api/openapi.js';
import { sha256Hex } from '../src/core/auth.js';
import { silentLogger } from '../src/core/logger.js';
import { ModelCache } from '../src/core/predict.js';
import { processMessage } from '../src/core/queue-worker.js';
import { Predictor } from '../src/engine/index.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { client, expectError } from './support/http.js';

const ADMIN_KEY = 'test-admin-key-0123456789';

async function setup() {
  const dataDir = await tempDir();
  const deps = createLocalDeps(dataDir, silentLogger);
  const app = createApp({
    ...deps,
    auth: { adminKeySha256: sha256Hex(ADMIN_KEY) },
    models: new ModelCache(deps),
    limits: { maxUploadBytes: 256 * 1024 },
  });
  const fetcher = (p: string, init?: RequestInit) => app.request(p, init);
  /** Runs every queued job to its end, the way the in-process worker does. */
  const drainQueue = async () => {
    for (;;) {
      const [message] = await deps.queue.receive({ maxMessages: 1 });
      if (!message) return;
      await processMessage(deps, message, {});
    }
  };
  return {
    dataDir,
    deps,
    app,
    api: client(fetcher, ADMIN_KEY),
    anonymous: client(fetcher),
    fetcher,
    drainQueue,
  };
}

describe('HTTP API (in-process)', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  beforeAll(async () => {
    ctx = await setup();
  });

  it('answers /health without a key and serves its OpenAPI document', async () => {
    // when
    const health = await ctx.anonymous.get('/health');
    const doc = await ctx.anonymous.get('/openapi.json');
    // then
    expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(doc.body.openapi).toBe('3.1.0');
  });

  it('documents every route it serves', () => {
    const documented = new Set(
      Object.entries(openApiDocument.paths).flatMap(([route, item]) =>
        Object.keys(item)
          .filter((method) => method !== 'parameters')
          .map((method) => `${method.toUpperCase()} ${route.replace(/\{(\w+)\}/g, ':$1')}`),
      ),
    );
    const served = ctx.app.routes
      .filter((route) => route.method !== 'ALL')
      .map((route) => `${route.method} ${route.path.replace(':task', ':task')}`);
    for (const route of served) expect(documented, route).toContain(route);
  });

  it('refuses requests without a valid key and with the wrong scope', async () => {
    expectError(await ctx.anonymous.get('/v1/tasks'), 401, 'UNAUTHORIZED');
    const malformed = await ctx.app.request('/v1/tasks', { headers: { authorization: 'Basic abc' } });
    expect(malformed.status).toBe(401);
    expectError(
      await client(ctx.fetcher, 'graft_aaaaaaaaaaaa_wrongwrongwrongwrongwrongwrongwrong').get('/v1/tasks'),
      401,
      'UNAUTHORIZED',
    );

    const created = await ctx.api.post('/v1/keys', { name: 'app', scopes: ['predict'] });
    expect(created.status).toBe(201);
    expect(created.body.key).toMatch(/^graft_/);
    const predictOnly = client(ctx.fetcher, created.body.key);
    expect((await predictOnly.get('/v1/tasks')).status).toBe(200);
    expectError(await predictOnly.put('/v1/tasks/escalate', {}), 403, 'FORBIDDEN');
    expectError(await predictOnly.post('/v1/keys', { scopes: ['admin'] }), 403, 'FORBIDDEN');

    const listed = await ctx.api.get('/v1/keys');
    expect(JSON.stringify(listed.body)).not.toContain(created.body.key);
    expect((await ctx.api.del(`/v1/keys/${created.body.id}`)).status).toBe(200);
    expectError(await predictOnly.get('/v1/tasks'), 401, 'UNAUTHORIZED');
  });

  it('validates task names and options', async () => {
    expectError(await ctx.api.put('/v1/tasks/Bad_Name', {}), 400, 'INVALID_NAME');
    expectError(await ctx.api.put('/v1/tasks/..%2Fetc', {}), 400, 'INVALID_NAME');
    expectError(await ctx.api.put('/v1/tasks/ok-name', { strategy: 'magic' }), 400, 'INVALID_OPTIONS');
    expectError(await ctx.api.put('/v1/tasks/ok-name', { labels: ['a', 'a'] }), 400, 'INVALID_OPTIONS');
    expectError(
      await ctx.api.call('PUT', '/v1/tasks/ok-name', '{"strategy":', 'application/json'),
      400,
      'INVALID_JSON',
    );
    expectError(
      await ctx.api.call('PUT', '/v1/tasks/ok-name', 'strategy=auto', 'application/x-www-form-urlencoded'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    expectError(await ctx.api.get('/v1/tasks/does-not-exist'), 404, 'TASK_NOT_FOUND');
  });

  it('rejects bad uploads with a 4xx that says how to fix them, and stores nothing', async () => {
    // given
    expect((await ctx.api.put('/v1/tasks/uploads', {})).status).toBe(201);
    const upload = (body: string, type = 'application/x-ndjson') =>
      ctx.api.post('/v1/tasks/uploads/datasets', body, type);
    const good = makeTextDataset();

    // then
    const broken = await upload(`${toJsonl(good.slice(0, 3))}{"text": "oops"\n`);
    expectError(broken, 422, 'INVALID_DATASET');
    expect(broken.body.error.message).toContain('line 4');
    expectError(await upload('text,category\nhello,a\n', 'text/csv'), 422, 'INVALID_DATASET');
    expectError(await upload('label\nx\n', 'text/csv'), 422, 'INVALID_DATASET');
    expectError(await upload(''), 422, 'INVALID_DATASET');
    expectError(await upload(toJsonl(good.map((r) => ({ ...r, label: 'same' })))), 422, 'DATASET_TOO_SMALL');
    const rare = await upload(toJsonl([...good, { text: 'refund please', label: 'refund' }]));
    expectError(rare, 422, 'DATASET_TOO_SMALL');
    expect(rare.body.error.message).toContain('"refund" has 1 example');
    expectError(await upload(toJsonl(good), 'application/pdf'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await upload('x'.repeat(300 * 1024)), 413, 'PAYLOAD_TOO_LARGE');
    expectError(
      await ctx.api.post('/v1/tasks/nope/datasets', toJsonl(good), 'application/x-ndjson'),
      404,
      'TASK_NOT_FOUND',
    );
    expectError(
      await ctx.api.post('/v1/tasks/NOPE/datasets', toJsonl(good), 'application/x-ndjson'),
      400,
      'INVALID_NAME',
    );

    // nothing was half-stored
    expect((await ctx.api.get('/v1/tasks/uploads/datasets')).body.datasets).toEqual([]);
    expect(await ctx.deps.store.list('tasks/uploads/datasets/')).toEqual([]);
    expect((await ctx.api.get('/v1/jobs?task=uploads')).body.jobs).toEqual([]);
  });

  it('predict before any model is a clear 409', async () => {
    await ctx.api.put('/v1/tasks/empty', {});
    expectError(await ctx.api.post('/v1/tasks/empty/predict', { inputs: ['hello'] }), 409, 'NO_MODEL');
    expectError(
      await ctx.api.post('/v1/tasks/missing/predict', { inputs: ['hello'] }),
      404,
      'TASK_NOT_FOUND',
    );
  });

  it('trains on upload, serves predictions, versions, promotes and rolls back', async () => {
    // given a task and a labelled upload
    await ctx.api.put('/v1/tasks/topics', {});
    const rows = makeTextDataset({ perLabel: 15 });
    const uploaded = await ctx.api.post('/v1/tasks/topics/datasets', toJsonl(rows), 'application/x-ndjson');
    expect(uploaded.status).toBe(201);
    expect(uploaded.body).toMatchObject({
      rows: rows.length,
      report: { labels: { weather: 15, sports: 15, finance: 15 } },
    });
    expect((await ctx.api.get(`/v1/jobs/${uploaded.body.jobId}`)).body.status).toBe('queued');

    // when the worker runs the queued job
    await ctx.drainQueue();

    // then the job succeeded with metrics and the model serves predictions
    const job = (await ctx.api.get(`/v1/jobs/${uploaded.body.jobId}`)).body;
    expect(job, JSON.stringify(job.error)).toMatchObject({
      status: 'succeeded',
      progress: 1,
      modelVersion: 'v1',
      promoted: true,
    });
    expect(job.events.map((e: { stage?: string }) => e.stage)).toEqual(
      expect.arrayContaining(['validating', 'training', 'exporting']),
    );
    const predicted = await ctx.api.post('/v1/tasks/topics/predict', {
      inputs: [
        'storm and snow in the forecast',
        { text: 'the team scored a late goal' },
        'bank loan interest',
      ],
    });
    expect(predicted.status).toBe(200);
    expect(predicted.body.model).toEqual({ task: 'topics', version: 'v1' });
    expect(predicted.body.predictions.map((p: { label: string }) => p.label)).toEqual([
      'weather',
      'sports',
      'finance',
    ]);
    for (const p of predicted.body.predictions) {
      const total = Object.values(p.scores as Record<string, number>).reduce((a, b) => a + b, 0);
      expect(total).toBeCloseTo(1, 5);
      expect(p.score).toBe(p.scores[p.label]);
    }

    // the card has the metrics and the file is the model the API serves
    const card = (await ctx.api.get('/v1/tasks/topics/models/v1')).body;
    expect(card.metrics).toMatchObject({ labels: ['finance', 'sports', 'weather'] });
    for (const field of ['accuracy', 'macroF1', 'perClass', 'confusionMatrix'])
      expect(card.metrics).toHaveProperty(field);
    expect(card.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    const file = await ctx.app.request('/v1/tasks/topics/models/v1/model.onnx', {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    expect(file.status).toBe(200);
    const predictor = await Predictor.load(new Uint8Array(await file.arrayBuffer()));
    const [probabilities] = await predictor.predict(['storm and snow in the forecast']);
    await predictor.dispose();
    expect(Array.from(probabilities ?? [])).toEqual(
      predictor.labels.map((label) => expect.closeTo(predicted.body.predictions[0].scores[label], 6)),
    );

    // a second upload trains v2 on both versions; the gate compares it with v1 on the same rows
    const more = makeTextDataset({ perLabel: 6, seed: 7 }).map((r) => ({ ...r, text: `${r.text} more` }));
    const second = await ctx.api.post('/v1/tasks/topics/datasets', toJsonl(more), 'application/x-ndjson');
    await ctx.drainQueue();
    const job2 = (await ctx.api.get(`/v1/jobs/${second.body.jobId}`)).body;
    expect(job2).toMatchObject({ status: 'succeeded', modelVersion: 'v2' });
    const card2 = (await ctx.api.get('/v1/tasks/topics/models/v2')).body;
    expect(card2.datasets).toHaveLength(2);
    expect(card2.promotion.against).toBe('v1');
    expect(card2.promotion.comparison.current.version).toBe('v1');

    // versions, promote, rollback
    const models = (await ctx.api.get('/v1/tasks/topics/models')).body;
    expect(models.models.map((m: { version: string }) => m.version)).toEqual(['v1', 'v2']);
    expect((await ctx.api.post('/v1/tasks/topics/models/v1/promote')).body.version).toBe('v1');
    expect((await ctx.api.post('/v1/tasks/topics/models/v2/promote')).body).toMatchObject({
      version: 'v2',
      history: ['v1'],
    });
    expect((await ctx.api.post('/v1/tasks/topics/rollback')).body.version).toBe('v1');
    expect((await ctx.api.post('/v1/tasks/topics/predict', { inputs: ['rain'] })).body.model.version).toBe(
      'v1',
    );
    expectError(await ctx.api.post('/v1/tasks/topics/rollback'), 409, 'NO_MODEL');
    expectError(await ctx.api.post('/v1/tasks/topics/models/v9/promote'), 404, 'MODEL_NOT_FOUND');

    // the same upload again is the same dataset version, and queues nothing
    const again = await ctx.api.post('/v1/tasks/topics/datasets', toJsonl(rows), 'application/x-ndjson');
    expect(again).toMatchObject({
      status: 200,
      body: { existing: true, datasetId: uploaded.body.datasetId },
    });
  });

  it('queues, lists and cancels jobs', async () => {
    await ctx.api.put('/v1/tasks/cancel-me', { autoTrain: false });
    const uploaded = await ctx.api.post(
      '/v1/tasks/cancel-me/datasets',
      toJsonl(makeTextDataset()),
      'application/x-ndjson',
    );
    expect(uploaded.body.jobId).toBeUndefined();
    const queued = await ctx.api.post('/v1/tasks/cancel-me/jobs', { hyperparameters: { maxEpochs: 3 } });
    expect(queued).toMatchObject({ status: 202, body: { status: 'queued' } });
    expectError(
      await ctx.api.post('/v1/tasks/cancel-me/jobs', { datasets: ['ds-nope'] }),
      404,
      'DATASET_NOT_FOUND',
    );
    expectError(
      await ctx.api.post('/v1/tasks/cancel-me/jobs', { hyperparameters: { learningRate: -1 } }),
      400,
      'INVALID_OPTIONS',
    );
    const cancelled = await ctx.api.post(`/v1/jobs/${queued.body.id}/cancel`);
    expect(cancelled.body.status).toBe('cancelled');
    expectError(await ctx.api.post(`/v1/jobs/${queued.body.id}/cancel`), 409, 'JOB_NOT_CANCELLABLE');
    await ctx.drainQueue(); // the cancelled job's message is consumed without training
    expect((await ctx.api.get(`/v1/jobs/${queued.body.id}`)).body.status).toBe('cancelled');
    expect((await ctx.api.get('/v1/jobs?task=cancel-me')).body.jobs).toHaveLength(1);
    expectError(await ctx.api.get('/v1/jobs/job-nope'), 404, 'JOB_NOT_FOUND');
    expectError(await ctx.api.get('/v1/jobs/..%2F..%2Fetc'), 404, 'JOB_NOT_FOUND');
  });

  it('answers /v1/embeddings in the OpenAI shape', async () => {
    const response = await ctx.api.post('/v1/embeddings', {
      model: 'hash-ngrams',
      input: ['hello world', 'bonjour'],
    });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      object: 'list',
      model: 'hash-ngrams',
      usage: { prompt_tokens: 3, total_tokens: 3 },
    });
    const [first] = response.body.data;
    expect(first).toMatchObject({ object: 'embedding', index: 0 });
    const norm = Math.hypot(...(first.embedding as number[]));
    expect(norm).toBeCloseTo(1, 5);

    const folded = await ctx.api.post('/v1/embeddings', {
      model: 'hash-ngrams',
      input: 'hello',
      dimensions: 256,
      encoding_format: 'base64',
    });
    const bytes = Buffer.from(folded.body.data[0].embedding, 'base64');
    expect(bytes.byteLength).toBe(256 * 4);
    expectError(
      await ctx.api.post('/v1/embeddings', { model: 'gpt-9', input: 'x' }),
      404,
      'BACKBONE_NOT_FOUND',
    );
    expectError(await ctx.api.post('/v1/embeddings', { model: 'hash-ngrams' }), 400, 'INVALID_OPTIONS');
  });
});
