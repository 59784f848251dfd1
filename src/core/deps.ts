import type { JobQueue } from '../ports/job-queue.js';
import type { ObjectStore } from '../ports/object-store.js';
import type { ExecutionProvider } from '../runtime/onnx.js';
import type { Logger } from './logger.js';

/** Where text backbones come from on the Hugging Face Hub (HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN). */
export interface HubSettings {
  endpoint?: string;
  offline?: boolean;
  token?: string;
  cacheDir: string;
}

/** What the core needs from its home: the same shape locally and in AWS. */
export interface CoreDeps {
  store: ObjectStore;
  queue: JobQueue;
  log: Logger;
  /** Where `PUT /v1/backbones/{name}` with a `hub` source downloads from; absent: hub sources are refused. */
  hub?: HubSettings;
  /** Whether a backbone may be registered from a directory of this machine (local mode only). */
  allowDirSources?: boolean;
  /** ONNX Runtime providers for backbones and parity checks: ['cuda', 'cpu'] in the GPU trainer. */
  executionProviders?: readonly ExecutionProvider[];
  /** Injectable clock for tests. */
  now?: () => Date;
}

export function nowIso(deps: Pick<CoreDeps, 'now'>): string {
  return (deps.now?.() ?? new Date()).toISOString();
}
