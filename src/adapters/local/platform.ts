import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { createApp } from '../../api/app.js';
import type { LocalConfig } from '../../config.js';
import { sha256Hex } from '../../core/auth.js';
import type { CoreDeps } from '../../core/deps.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { ModelCache } from '../../core/predict.js';
import { runQueueWorker } from '../../core/queue-worker.js';
import { DirObjectStore } from './dir-object-store.js';
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
}

export interface LocalPlatform {
  url: string;
  deps: CoreDeps;
  close(): Promise<void>;
}

/** The local store and queue: the same layout as the bucket, under the data directory. */
export function createLocalDeps(dataDir: string, log: Logger, visibilityTimeoutMs = 30_000): CoreDeps {
  return {
    store: new DirObjectStore(path.join(dataDir, 'store')),
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
  const { worker = true, visibilityTimeoutMs = 30_000, heartbeatMs = 5_000 } = options;
  const log = options.log ?? createLogger(config.logLevel);
  await mkdir(config.dataDir, { recursive: true });
  const deps = createLocalDeps(config.dataDir, log, visibilityTimeoutMs);
  const adminKey = config.apiKey ?? (await adminKeyFromDataDir(config.dataDir, options.onAdminKeyCreated));

  const app = createApp({
    ...deps,
    auth: { adminKeySha256: sha256Hex(adminKey) },
    models: new ModelCache(deps),
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
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = `graft_admin_${randomBytes(24).toString('base64url')}`;
  await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  onCreated?.(key, file);
  return key;
}
