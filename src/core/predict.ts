import { Predictor, type RawInput } from '../engine/index.js';
import { GraftError } from '../errors.js';
import type { ObjectStore } from '../ports/object-store.js';
import type { CoreDeps } from './deps.js';
import { MicroBatcher, type MicroBatchOptions } from './micro-batch.js';
import { type Current, findCurrent } from './models.js';
import { ReadThroughCache } from './read-through-cache.js';
import { storageKeys } from './storage-keys.js';
import { getTask } from './tasks.js';

export interface ModelCacheOptions {
  /**
   * How long a task's current-model pointer is trusted before it is read again (0: every request). A pointer this
   * process changes itself is read again at once, whatever this says (see `pointerChanged`).
   */
  refreshMs?: number;
  /** Loaded models kept in memory; the least recently used is dropped beyond this. */
  maxModels?: number;
  /**
   * Coalesce concurrent predictions for the same model version into one ONNX Runtime call. For long-running
   * servers, where requests overlap; not for Lambda, where one invocation is one request. Off unless given.
   */
  microBatch?: MicroBatchOptions | false;
}

interface Loaded {
  predictor: Promise<Predictor>;
  usedAt: number;
  /** Predictions running on it now. */
  inFlight: number;
  /** Dropped from the cache: released once no prediction runs on it. */
  retired: boolean;
  idle?: () => void;
}

// A dropped model is released after this, or when its last running prediction ends if that is later.
const RETIRE_GRACE_MS = 2_000;

/**
 * Keeps each task's served model loaded: the pointer (current.json) is re-read after `refreshMs`, so a newly
 * promoted version is served within that bound without a restart, and at once when this process promoted it
 * (`pointerChanged`); model sessions are memoised per version and a failed load is not cached.
 */
export class ModelCache {
  private readonly pointers: ReadThroughCache<Current | undefined>;
  private readonly models = new Map<string, Loaded>();
  private readonly maxModels: number;
  /** Present when micro-batching is on; its `stats` count requests and ONNX Runtime runs. */
  readonly batcher: MicroBatcher<Predictor, RawInput, Float32Array> | undefined;

  constructor(
    private readonly deps: CoreDeps,
    { refreshMs = 0, maxModels = 8, microBatch = false }: ModelCacheOptions = {},
  ) {
    this.pointers = new ReadThroughCache(refreshMs);
    this.maxModels = maxModels;
    this.batcher =
      microBatch === false
        ? undefined
        : new MicroBatcher(
            (predictor: Predictor, inputs: RawInput[]) => predictor.predict(inputs),
            microBatch,
          );
  }

  /** Calibrated probabilities of texts or images from the task's model in service (batched with concurrent calls when on). */
  async predict(task: string, inputs: RawInput[]) {
    const { version, loaded } = await this.load(task);
    loaded.inFlight++;
    try {
      const predictor = await loaded.predictor;
      const probabilities = this.batcher
        ? await this.batcher.submit(predictor, inputs)
        : await predictor.predict(inputs);
      return { version, labels: predictor.labels, probabilities };
    } finally {
      loaded.inFlight--;
      if (loaded.inFlight === 0) loaded.idle?.();
    }
  }

  private async load(task: string): Promise<{ version: string; loaded: Loaded }> {
    const current = await this.pointers.get(task, () => findCurrent(this.deps, task));
    if (!current) {
      await getTask(this.deps, task); // unknown task: TASK_NOT_FOUND rather than NO_MODEL
      throw new GraftError(
        'NO_MODEL',
        `Task "${task}" has no model in service yet: upload a labelled dataset (POST /v1/tasks/${task}/datasets) and wait for its job to succeed.`,
      );
    }
    const key = `${task}/${current.version}`;
    let loaded = this.models.get(key);
    if (!loaded) {
      const predictor = this.deps.store
        .get(storageKeys.modelFile(task, current.version))
        .then(({ body }) => Predictor.load(body, { executionProviders: this.deps.executionProviders }));
      loaded = { predictor, usedAt: Date.now(), inFlight: 0, retired: false };
      this.models.set(key, loaded);
      predictor.catch(() => {
        if (this.models.get(key) === loaded) this.models.delete(key);
      });
      // The task's earlier versions can no longer be served: release them now rather than when the cache fills
      // (a retrain every few seconds would otherwise keep maxModels sessions alive per task).
      for (const [other, old] of this.models) {
        if (other !== key && other.startsWith(`${task}/`)) this.retire(other, old);
      }
      this.evict();
    }
    loaded.usedAt = Date.now();
    return { version: current.version, loaded };
  }

  /**
   * The task's current.json was just written (a promotion or rollback made in this process): the next request
   * reads it again instead of trusting the pointer it holds.
   */
  pointerChanged(task: string): void {
    this.pointers.invalidate(task);
  }

  private evict() {
    while (this.models.size > this.maxModels) {
      const [oldestKey, oldest] = [...this.models].reduce((a, b) => (b[1].usedAt < a[1].usedAt ? b : a));
      this.retire(oldestKey, oldest);
    }
  }

  private retire(key: string, loaded: Loaded) {
    if (this.models.get(key) === loaded) this.models.delete(key);
    if (loaded.retired) return;
    loaded.retired = true;
    const release = () => void loaded.predictor.then((p) => p.dispose()).catch(() => {});
    setTimeout(() => {
      // Predictions already running on it finish before its native session is released.
      if (loaded.inFlight === 0) release();
      else loaded.idle = release;
    }, RETIRE_GRACE_MS).unref();
  }
}

/**
 * `store`, telling `cache` of every write or delete of a task's current.json made through it. The local platform
 * gives this store to its API and its in-process worker, so a promotion or rollback, by request or by a job, is
 * served from the next request on while the cache otherwise trusts a pointer for a while.
 */
export function pointerWatchingStore(
  store: ObjectStore,
  cache: Pick<ModelCache, 'pointerChanged'>,
): ObjectStore {
  const changing = async <T>(key: string, write: Promise<T>): Promise<T> => {
    try {
      return await write;
    } finally {
      // After a failed write too: one that timed out may still land (one landing later is left to refreshMs).
      const task = pointerTask(key);
      if (task !== undefined) cache.pointerChanged(task);
    }
  };
  return {
    get: (key) => store.get(key),
    find: (key) => store.find(key),
    list: (prefix) => store.list(prefix),
    put: (key, body, options) => changing(key, store.put(key, body, options)),
    delete: (key) => changing(key, store.delete(key)),
  };
}

/** The task whose current.json `key` is (see `storageKeys.current`), else undefined. */
function pointerTask(key: string): string | undefined {
  const task = /^tasks\/([^/]+)\/current\.json$/.exec(key)?.[1];
  return task !== undefined && storageKeys.current(task) === key ? task : undefined;
}

export interface Prediction {
  label: string;
  score: number;
  scores: Record<string, number>;
}

export async function predict(cache: ModelCache, task: string, inputs: RawInput[]) {
  const { version, labels, probabilities } = await cache.predict(task, inputs);
  const predictions: Prediction[] = probabilities.map((row) => {
    let best = 0;
    const scores: Record<string, number> = {};
    labels.forEach((label, i) => {
      const p = row[i] ?? 0;
      scores[label] = p;
      if (p > (row[best] ?? 0)) best = i;
    });
    return { label: labels[best] ?? '', score: row[best] ?? 0, scores };
  });
  return { model: { task, version }, predictions };
}
