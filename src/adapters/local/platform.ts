import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { createApp } from '../../api/app.js';
import type { LocalConfig } from '../../config.js';
import { sha256Hex } from '../../core/auth.js';
import { boundedObjectStore } from '../../core/bounded-object-store.js';
import type { CoreDeps } from '../../core/deps.js';
import { createLogger, type Logger } from '../../core/logger.js';
import type { MicroBatchOptions } from '../../core/micro-batch.js';
import { ModelCache, pointerWatchingStore } from '../../core/predict.js';
import { runQueueWorker } from '../../core/queue-worker.js';
import { DirObjectStore } from './dir-object-store.js';
import { readOrCreateSecretFile } from './file-lock.js';
import { HmacSignedUrls, uploadSecretFromDataDir } from './hmac-signed-urls.js';
import { LocalJobQueue } from './local-job-queue.js';

export interface LocalPlatformOptions {
  /** Run the in-process worker (default true); off lets a test leave jobs queued. */
  worker?: boolean;
  /** Visibility timeout of the local queue: how soon a job whose worker died is delivered again. */
  visibilityTimeoutMs?: number;
  heartbeatMs?: number;
  log?: Logger;
  /** Called once with the admin key when one is created in the data directory. */
  onAdminKeyCreated?: (key: string, file: string) => void;
  /** Coalescing of concurrent predict requests into one ONNX Runtime call (on by default); false turns it off. */
  microBatch?: MicroBatchOptions | false;
  /** Longest a store call may take before it fails with STORAGE_UNAVAILABLE (503). @default 10_000 */
  storeTimeoutMs?: number;
  /**
   * How long a task's current.json is trusted instead of read per request. Promotions and rollbacks made by this
   * process are served at once whatever it is; it bounds how soon one made by another process on the same data
   * directory is. @default 1_000
   */
  pointerRefreshMs?: number;
}

export interface LocalPlatform {
  url: string;
  deps: CoreDeps;
  close(): Promise<void>;
}

/**
 * The local store and queue: the same layout as the bucket, under the data directory. Store calls are bounded by
 * `storeTimeoutMs`, so a stuck disk or lock answers 503 instead of hanging a request or a job.
 */
export function createLocalDeps(
  dataDir: string,
  log: Logger,
  visibilityTimeoutMs = 30_000,
  storeTimeoutMs = 10_000,
): CoreDeps {
  return {
    store: boundedObjectStore(new DirObjectStore(path.join(dataDir, 'store')), { timeoutMs: storeTimeoutMs }),
    queue: new LocalJobQueue({
      dir: path.join(dataDir, 'queue'),
      defaultVisibilityTimeoutMs: visibilityTimeoutMs,
    }),
    log,
  };
}

/**
 * Brings the whole platform up on one machine: directory store, durable local queue, in-process worker and the
 * HTTP API, listening on `config.host:config.port`.
 */
export async function startLocalPlatform(
  config: LocalConfig,
  options: LocalPlatformOptions = {},
): Promise<LocalPlatform> {
  const {
    worker = true,
    visibilityTimeoutMs = 30_000,
    heartbeatMs = 5_000,
    microBatch = {},
    storeTimeoutMs = 10_000,
    pointerRefreshMs = 1_000,
  } = options;
  const log = options.log ?? createLogger(config.logLevel);
  await mkdir(config.dataDir, { recursive: true });
  const local: CoreDeps = {
    ...createLocalDeps(config.dataDir, log, visibilityTimeoutMs, storeTimeoutMs),
    hub: config.hub,
    allowDirSources: true,
  };
  // The API and the worker write current.json through `deps.store`, which tells the cache: their promotions and
  // rollbacks are served from the next request on.
  const models = new ModelCache(local, { microBatch, refreshMs: pointerRefreshMs });
  const deps: CoreDeps = { ...local, store: pointerWatchingStore(local.store, models) };
  const adminKey = config.apiKey ?? (await adminKeyFromDataDir(config.dataDir, options.onAdminKeyCreated));
  // Upload URLs point back at this server (PUT /v1/uploads/{token}), which ingests the file at once.
  const signedUrls = new HmacSignedUrls(await uploadSecretFromDataDir(config.dataDir));

  const app = createApp({
    ...deps,
    auth: { adminKeySha256: sha256Hex(adminKey) },
    models,
    signedUrls,
    limits: { maxUploadBytes: config.maxUploadBytes },
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;

  const stop = new AbortController();
  const workerDone = worker
    ? runQueueWorker(deps, { signal: stop.signal, visibilityTimeoutMs, worker: { heartbeatMs } })
    : Promise.resolve();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  log.info('graft is listening', { url: `http://${host}:${port}`, dataDir: config.dataDir, worker });

  return {
    url: `http://${host}:${port}`,
    deps,
    async close() {
      stop.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await workerDone;
    },
  };
}

/** The admin key kept in the data directory (mode 0600), created on first start. */
async function adminKeyFromDataDir(dataDir: string, onCreated?: (key: string, file: string) => void) {
  const file = path.join(dataDir, 'admin-key');
  const { value, created } = await readOrCreateSecretFile(
    file,
    () => `graft_admin_${randomBytes(24).toString('base64url')}`,
  );
  if (created) onCreated?.(value, file);
  return value;
}
