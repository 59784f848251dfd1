import { Predictor } from '../engine/index.js';
import { GraftError } from '../errors.js';
import type { CoreDeps } from './deps.js';
import { type Current, findCurrent } from './models.js';
import { storageKeys } from './storage-keys.js';
import { getTask } from './tasks.js';

export interface ModelCacheOptions {
  /** How long a task's current-model pointer is trusted before it is read again (0: every request). */
  refreshMs?: number;
  /** Loaded models kept in memory; the least recently used is dropped beyond this. */
  maxModels?: number;
}

interface Loaded {
  predictor: Promise<Predictor>;
  usedAt: number;
}

/**
 * Keeps each task's served model loaded: the pointer (current.json) is re-read after `refreshMs`, so a newly
 * promoted version is served within that bound without a restart; model sessions are memoised per version and a
 * failed load is not cached.
 */
export class ModelCache {
  private readonly pointers = new Map<string, { current: Current | undefined; readAt: number }>();
  private readonly models = new Map<string, Loaded>();
  private readonly refreshMs: number;
  private readonly maxModels: number;

  constructor(
    private readonly deps: CoreDeps,
    { refreshMs = 0, maxModels = 8 }: ModelCacheOptions = {},
  ) {
    this.refreshMs = refreshMs;
    this.maxModels = maxModels;
  }

  /** The task's model in service, loaded; NO_MODEL when none has been promoted yet. */
  async served(task: string): Promise<{ version: string; predictor: Predictor }> {
    const current = await this.pointer(task);
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
        .then(({ body }) => Predictor.load(body));
      loaded = { predictor, usedAt: Date.now() };
      this.models.set(key, loaded);
      predictor.catch(() => this.models.delete(key));
      this.evict();
    }
    loaded.usedAt = Date.now();
    return { version: current.version, predictor: await loaded.predictor };
  }

  private async pointer(task: string): Promise<Current | undefined> {
    const cached = this.pointers.get(task);
    if (cached && Date.now() - cached.readAt < this.refreshMs) return cached.current;
    const current = await findCurrent(this.deps, task);
    this.pointers.set(task, { current, readAt: Date.now() });
    return current;
  }

  private evict() {
    while (this.models.size > this.maxModels) {
      const [oldestKey, oldest] = [...this.models].reduce((a, b) => (b[1].usedAt < a[1].usedAt ? b : a));
      this.models.delete(oldestKey);
      // Requests already holding the predictor finish before its native session is released.
      setTimeout(() => void oldest.predictor.then((p) => p.dispose()).catch(() => {}), 30_000).unref();
    }
  }
}

export interface Prediction {
  label: string;
  score: number;
  scores: Record<string, number>;
}

export async function predict(cache: ModelCache, task: string, texts: string[]) {
  const { version, predictor } = await cache.served(task);
  const probabilities = await predictor.predict(texts);
  const predictions: Prediction[] = probabilities.map((row) => {
    let best = 0;
    const scores: Record<string, number> = {};
    predictor.labels.forEach((label, i) => {
      const p = row[i] ?? 0;
      scores[label] = p;
      if (p > (row[best] ?? 0)) best = i;
    });
    return { label: predictor.labels[best] ?? '', score: row[best] ?? 0, scores };
  });
  return { model: { task, version }, predictions };
}
