import path from 'node:path';
import type { Hono } from 'hono';
import { DirObjectStore } from '../../src/adapters/local/dir-object-store.js';
import { HmacSignedUrls, uploadSecretFromDataDir } from '../../src/adapters/local/hmac-signed-urls.js';
import { LocalJobQueue } from '../../src/adapters/local/local-job-queue.js';
import { createApp } from '../../src/api/app.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { sha256Hex } from '../../src/core/auth.js';
import { boundedObjectStore } from '../../src/core/bounded-object-store.js';
import type { CoreDeps } from '../../src/core/deps.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MicroBatchOptions } from '../../src/core/micro-batch.js';
import { ModelCache } from '../../src/core/predict.js';
import { processMessage } from '../../src/core/queue-worker.js';
import type { ObjectStore } from '../../src/ports/object-store.js';
import { FaultyObjectStore } from './faulty-store.js';
import { makeTextDataset, tempDir, toJsonl } from './fixtures.js';
import { client } from './http.js';

export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface TestAppOptions {
  /** Reuse a data directory (same layout as `npm start`: store/ and queue/). */
  dataDir?: string;
  /** Bound on each store call (the platform's default is 10 s). */
  storeTimeoutMs?: number;
  visibilityTimeoutMs?: number;
  microBatch?: MicroBatchOptions | false;
  limits?: { maxUploadBytes?: number; maxJsonBytes?: number; maxPredictInputs?: number };
}

/**
 * The Hono app in-process, wired as the local platform wires it (directory store bounded in time, durable local
 * queue, HMAC upload URLs; the same data directory layout as `npm start`), with a FaultyObjectStore under the
 * bound (no faults until injected).
 */
export async function createTestApp(options: TestAppOptions = {}) {
  const { storeTimeoutMs = 10_000, visibilityTimeoutMs = 30_000, microBatch = false, limits } = options;
  const dataDir = options.dataDir ?? (await tempDir('graft-rel-'));
  const faulty = new FaultyObjectStore(new DirObjectStore(path.join(dataDir, 'store')));
  const store: ObjectStore = boundedObjectStore(faulty, { timeoutMs: storeTimeoutMs });
  const queue = new LocalJobQueue({
    dir: path.join(dataDir, 'queue'),
    defaultVisibilityTimeoutMs: visibilityTimeoutMs,
  });
  const deps: CoreDeps = { store, queue, log: silentLogger };
  const models = new ModelCache(deps, { microBatch });
  const signedUrls = new HmacSignedUrls(await uploadSecretFromDataDir(dataDir));
  const app = createApp({
    ...deps,
    auth: { adminKeySha256: sha256Hex(ADMIN_KEY) },
    models,
    signedUrls,
    limits,
  });
  const fetcher = (p: string, init?: RequestInit) => app.request(p, init);
  /** Runs every queued job to its end, the way the in-process worker does. */
  const drainQueue = async (workerOptions: Parameters<typeof processMessage>[2] = {}) => {
    for (;;) {
      const [message] = await deps.queue.receive({ maxMessages: 1 });
      if (!message) return;
      await processMessage(deps, message, workerOptions);
    }
  };
  return {
    dataDir,
    deps,
    faulty,
    models,
    app,
    fetcher,
    api: client(fetcher, ADMIN_KEY),
    anonymous: client(fetcher),
    drainQueue,
  };
}

export type TestApp = Awaited<ReturnType<typeof createTestApp>>;

/** Creates `task` (a linear head: the quickest strategy), uploads a small learnable dataset and runs its job: the task then serves `v1`. */
export async function trainTask(ctx: TestApp, task: string, { perLabel = 12, seed = 1 } = {}) {
  await ctx.api.put(`/v1/tasks/${task}`, { strategy: 'logistic' });
  const uploaded = await ctx.api.post(
    `/v1/tasks/${task}/datasets`,
    toJsonl(makeTextDataset({ perLabel, seed })),
    'application/x-ndjson',
  );
  if (uploaded.status !== 201) throw new Error(`upload failed: ${JSON.stringify(uploaded.body)}`);
  await ctx.drainQueue();
  const job = (await ctx.api.get(`/v1/jobs/${uploaded.body.jobId}`)).body;
  if (job.status !== 'succeeded') throw new Error(`job did not succeed: ${JSON.stringify(job)}`);
  return { datasetId: uploaded.body.datasetId as string, jobId: job.id as string, version: job.modelVersion };
}

/** Creates `task` (no training on upload), uploads a small dataset and queues one job, which is returned untrained. */
export async function queuedJob(ctx: TestApp, task: string, { perLabel = 20 } = {}): Promise<string> {
  await ctx.api.put(`/v1/tasks/${task}`, { autoTrain: false, strategy: 'logistic' });
  const rows = makeTextDataset({ perLabel });
  const uploaded = await ctx.api.post(`/v1/tasks/${task}/datasets`, toJsonl(rows), 'application/x-ndjson');
  if (uploaded.status !== 201) throw new Error(`upload failed: ${JSON.stringify(uploaded.body)}`);
  const queued = await ctx.api.post(`/v1/tasks/${task}/jobs`, {});
  if (queued.status !== 202) throw new Error(`queueing failed: ${JSON.stringify(queued.body)}`);
  return queued.body.id as string;
}

export interface Route {
  method: string;
  /** Hono's pattern, e.g. `/v1/tasks/:task/predict`. */
  path: string;
  /** From the OpenAPI document: `security: []` marks a route that needs no key. */
  public: boolean;
}

/**
 * Every route the app serves (from Hono's route table, so a new route is covered without touching the tests),
 * with whether the OpenAPI document marks it public.
 */
export function routesOf(app: Hono<any>): Route[] {
  const seen = new Set<string>();
  const routes: Route[] = [];
  for (const route of app.routes) {
    if (route.method === 'ALL') continue;
    const id = `${route.method} ${route.path}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const documented = openApiDocument.paths[
      route.path.replace(/:(\w+)/g, '{$1}') as keyof typeof openApiDocument.paths
    ] as Record<string, { security?: unknown[] }> | undefined;
    const operation = documented?.[route.method.toLowerCase()];
    routes.push({
      method: route.method,
      path: route.path,
      public: Array.isArray(operation?.security) && operation.security.length === 0,
    });
  }
  return routes;
}

/** Fills a route pattern's parameters (`:task`, `:version`, `:id`) from `values`, percent-encoded as UTF-8. */
export function fillPath(pattern: string, values: Record<string, string>): string {
  return pattern.replace(/:(\w+)/g, (_, name: string) => encodeSegment(values[name] ?? 'x'));
}

// encodeURIComponent throws on a lone surrogate; a client sends its UTF-8 replacement, and so does this.
function encodeSegment(value: string): string {
  return [...Buffer.from(value, 'utf8')]
    .map((byte) =>
      /[A-Za-z0-9\-_.~]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

/** Rejects when `promise` has not settled within `ms`: a hang becomes a test failure that names the call. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
