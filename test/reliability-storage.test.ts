import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalJobQueue } from '../src/adapters/local/local-job-queue.js';
import { getJob } from '../src/core/jobs.js';
import { listCards } from '../src/core/models.js';
import { processMessage } from '../src/core/queue-worker.js';
import type { FaultKind } from './support/faulty-store.js';
import { makeTextDataset, toJsonl } from './support/fixtures.js';
import {
  createTestApp,
  fillPath,
  type Route,
  routesOf,
  type TestApp,
  trainTask,
  within,
} from './support/harness.js';
import { expectError } from './support/http.js';

const STORE_TIMEOUT_MS = 250;

/** Delivers the job's messages (waiting out visibility timeouts) until the job has ended. */
async function runToEnd(ctx: TestApp, jobId: string) {
  const deadline = Date.now() + 30_000;
  let deliveries = 0;
  for (;;) {
    const job = await getJob(ctx.deps, jobId);
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) return { job, deliveries };
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not end: ${JSON.stringify(job)}`);
    const [message] = await ctx.deps.queue.receive({ maxMessages: 1, waitMs: 1_000 });
    if (!message) continue;
    deliveries++;
    await processMessage(ctx.deps, message, { visibilityTimeoutMs: 200 });
  }
}

async function queuedJob(ctx: TestApp, task: string) {
  await ctx.api.put(`/v1/tasks/${task}`, { autoTrain: false, strategy: 'logistic' });
  await ctx.api.post(`/v1/tasks/${task}/datasets`, toJsonl(makeTextDataset()), 'application/x-ndjson');
  return (await ctx.api.post(`/v1/tasks/${task}/jobs`, {})).body.id as string;
}

describe('storage faults during a job', () => {
  it('a write that fails once is retried on the next delivery, and the job succeeds once', async () => {
    // given
    const ctx = await createTestApp({ visibilityTimeoutMs: 200, storeTimeoutMs: STORE_TIMEOUT_MS });
    const jobId = await queuedJob(ctx, 'flaky');
    ctx.faulty.inject({ fault: 'unavailable', ops: ['put'], key: /models\/v1\/model\.onnx$/, times: 1 });

    // when
    const { job, deliveries } = await runToEnd(ctx, jobId);

    // then
    expect(deliveries).toBe(2);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2, promoted: true });
    expect(job.events.map((e) => e.message)).toContain(
      'attempt 1 failed (STORAGE_UNAVAILABLE); it will be retried',
    );
    expect((await listCards(ctx.deps, 'flaky')).map((c) => c.version)).toEqual(['v1']);
  });

  it('a write that hangs is cut off by the store bound, and the job is retried', async () => {
    // given a store whose card write never answers, once
    const ctx = await createTestApp({ visibilityTimeoutMs: 200, storeTimeoutMs: STORE_TIMEOUT_MS });
    const jobId = await queuedJob(ctx, 'stuck');
    ctx.faulty.inject({ fault: 'hang', ops: ['put'], key: /models\/v1\/card\.json$/, times: 1 });

    // when
    const { job } = await runToEnd(ctx, jobId);

    // then
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(await ctx.deps.store.find('tasks/stuck/models/v1/card.json')).toBeDefined();
    ctx.faulty.clear();
  });

  it('a store that keeps failing fails the job with a reason on its last delivery, and publishes nothing', async () => {
    // given
    const ctx = await createTestApp({ visibilityTimeoutMs: 200, storeTimeoutMs: STORE_TIMEOUT_MS });
    const jobId = await queuedJob(ctx, 'broken');
    ctx.faulty.inject({ fault: 'crash', ops: ['put'], key: /models\/v1\/model\.onnx$/ });

    // when
    const { job, deliveries } = await runToEnd(ctx, jobId);

    // then failed, saying what failed; the message is gone, not dead-lettered with the job left running
    expect(deliveries).toBe(3);
    expect(job.status).toBe('failed');
    expect(job.error?.code).toBe('STORAGE_UNAVAILABLE');
    expect(job.error?.message).toContain('model.onnx');
    expect(await ctx.deps.store.list('tasks/broken/models/')).toEqual([]);
    expect(await ctx.deps.store.find('tasks/broken/current.json')).toBeUndefined();
    expect(await (ctx.deps.queue as LocalJobQueue).depth()).toEqual({
      visible: 0,
      inFlight: 0,
      deadLetter: 0,
    });

    // and once the store is back, a new job for the task succeeds
    ctx.faulty.clear();
    const again = (await ctx.api.post('/v1/tasks/broken/jobs', {})).body.id as string;
    expect((await runToEnd(ctx, again)).job).toMatchObject({ status: 'succeeded', modelVersion: 'v2' });
  });
});

describe('the API while the store fails', () => {
  let ctx: TestApp;
  let keyId: string;
  let jobId: string;
  let before: { status: number; body: unknown };
  const predictBody = { inputs: ['storm and snow in the forecast', 'goal for the home team'] };

  beforeAll(async () => {
    ctx = await createTestApp({ storeTimeoutMs: STORE_TIMEOUT_MS });
    ({ jobId } = await trainTask(ctx, 'alpha'));
    keyId = (await ctx.api.post('/v1/keys', { name: 'app', scopes: ['predict'] })).body.id;
    const { status, body } = await ctx.api.post('/v1/tasks/alpha/predict', predictBody);
    expect(status).toBe(200);
    before = { status, body };
  });

  /** A plausible request for each route: the store is what fails, not the request. */
  function request(route: Route): { path: string; body?: unknown; type?: string } {
    const params = { task: 'alpha', version: 'v1', id: route.path.startsWith('/v1/keys') ? keyId : jobId };
    const path = fillPath(route.path, params);
    const bodies: Record<string, { body: unknown; type?: string }> = {
      'PUT /v1/tasks/:task': { body: { autoTrain: true } },
      'POST /v1/tasks/:task/datasets': { body: toJsonl(makeTextDataset()), type: 'application/x-ndjson' },
      'POST /v1/tasks/:task/jobs': { body: {} },
      'POST /v1/tasks/:task/predict': { body: predictBody },
      'POST /v1/embeddings': { body: { model: 'hash-ngrams', input: 'hello' } },
      'POST /v1/keys': { body: { scopes: ['predict'] } },
    };
    const given = bodies[`${route.method} ${route.path}`];
    return { path, body: given?.body ?? (route.method === 'GET' ? undefined : {}), type: given?.type };
  }

  for (const fault of ['hang', 'crash', 'unavailable'] satisfies FaultKind[]) {
    it(`answers 503 STORAGE_UNAVAILABLE on every route that needs the store when calls ${fault}`, async () => {
      // given a store on which every call fails that way
      ctx.faulty.inject({ fault });
      try {
        const answers: string[] = [];
        for (const route of routesOf(ctx.app)) {
          const { path, body, type } = request(route);
          // when
          const started = Date.now();
          const response = await within(
            STORE_TIMEOUT_MS * 8,
            `${route.method} ${path}`,
            ctx.api.call(route.method, path, body, type),
          );
          // then an answer within the bound, and never a 500: the store's failure is a 503 with its code (a
          // request refused before the store is reached, or a route that needs none, answers as usual)
          const what = `${route.method} ${route.path} -> ${response.status} ${JSON.stringify(response.body).slice(0, 200)}`;
          expect(Date.now() - started, what).toBeLessThan(STORE_TIMEOUT_MS * 4);
          if (response.status >= 500) expectError(response, 503, 'STORAGE_UNAVAILABLE');
          else if (response.status >= 400) expect(response.body.error?.code, what).toMatch(/^[A-Z_]+$/);
          answers.push(`${route.method} ${route.path} ${response.status}`);
        }
        // the routes that read or write the store, which are all of these
        for (const route of [
          'GET /v1/tasks',
          'PUT /v1/tasks/:task',
          'GET /v1/tasks/:task',
          'POST /v1/tasks/:task/datasets',
          'POST /v1/tasks/:task/jobs',
          'GET /v1/jobs/:id',
          'POST /v1/tasks/:task/predict',
          'GET /v1/tasks/:task/models/:version/model.onnx',
          'POST /v1/tasks/:task/models/:version/promote',
          'POST /v1/keys',
        ]) {
          expect(answers).toContain(`${route} 503`);
        }
        expect(answers).toContain('GET /health 200');
      } finally {
        ctx.faulty.clear();
      }

      // and once the store answers again, everything works and nothing was lost
      expect(await ctx.api.post('/v1/tasks/alpha/predict', predictBody)).toMatchObject(before);
      expect((await ctx.api.get('/v1/tasks/alpha')).body.currentModel.version).toBe('v1');
    });
  }

  it('a model load that hangs is not memoised: the next request loads the model again', async () => {
    // given a fresh server process (nothing loaded) whose first model read hangs
    const fresh = await createTestApp({ dataDir: ctx.dataDir, storeTimeoutMs: STORE_TIMEOUT_MS });
    fresh.faulty.inject({ fault: 'hang', ops: ['get'], key: /model\.onnx$/, times: 1 });

    // when / then
    expectError(await fresh.api.post('/v1/tasks/alpha/predict', predictBody), 503, 'STORAGE_UNAVAILABLE');
    expect(await fresh.api.post('/v1/tasks/alpha/predict', predictBody)).toMatchObject(before);
    fresh.faulty.clear();
  });
});
