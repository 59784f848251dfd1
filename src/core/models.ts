import { z } from 'zod';
import { GraftError, isCode } from '../errors.js';
import { checkName } from '../names.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, updateJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';
import { getTask } from './tasks.js';

export const PromotionDecisionSchema = z.object({
  promote: z.boolean(),
  reason: z.string(),
  /** The version in service when the decision was taken, and both models' scores on the same rows. */
  against: z.string().optional(),
  comparison: z.record(z.string(), z.unknown()).optional(),
});
export type PromotionDecision = z.infer<typeof PromotionDecisionSchema>;

export const ModelCardSchema = z.object({
  task: z.string(),
  version: z.string(),
  jobId: z.string(),
  createdAt: z.string(),
  backbone: z.record(z.string(), z.unknown()),
  strategy: z.string(),
  labels: z.array(z.string()),
  datasets: z.array(z.string()),
  rows: z.object({ train: z.number().int(), validation: z.number().int() }),
  /** Where the rows came from: the newest version, rehearsal, augmentation, unlabelled rows for self-training. */
  data: z.record(z.string(), z.number()).optional(),
  metrics: z.record(z.string(), z.unknown()),
  /** The candidate on the validation rows of earlier dataset versions alone: what forgetting would show in. */
  earlierMetrics: z.record(z.string(), z.unknown()).optional(),
  hyperparameters: z.record(z.string(), z.unknown()),
  training: z.record(z.string(), z.unknown()),
  parity: z.object({ maxAbsDiff: z.number(), rows: z.number().int() }),
  promotion: PromotionDecisionSchema,
  model: z.object({ sha256: z.string(), bytes: z.number().int() }),
  timingsMs: z.record(z.string(), z.number()),
});
export type ModelCard = z.infer<typeof ModelCardSchema>;

export const CurrentSchema = z.object({
  version: z.string(),
  /** ETag of the model file this pointer was set to. */
  etag: z.string(),
  promotedAt: z.string(),
  reason: z.string(),
  /** Earlier versions, most recent first: what rollback returns to. */
  history: z.array(z.string()),
});
export type Current = z.infer<typeof CurrentSchema>;

/** The headline figures of a model's metrics, as jobs and model listings show them. */
export function metricsSummary({
  accuracy,
  macroF1,
  logLoss,
  ece,
  n,
}: Partial<Record<'accuracy' | 'macroF1' | 'logLoss' | 'ece' | 'n', unknown>>) {
  return { accuracy, macroF1, logLoss, ece, validationRows: n };
}

export async function findCard(
  deps: CoreDeps,
  task: string,
  version: string,
): Promise<ModelCard | undefined> {
  const found = await findJson(
    deps.store,
    storageKeys.modelCard(task, checkName(version, 'model version')),
    ModelCardSchema,
  );
  return found?.value;
}

export async function getCard(deps: CoreDeps, task: string, version: string): Promise<ModelCard> {
  const card = await findCard(deps, task, version);
  if (!card) {
    throw new GraftError(
      'MODEL_NOT_FOUND',
      `Model version "${version}" of task "${task}" does not exist. List versions with GET /v1/tasks/${task}/models.`,
    );
  }
  return card;
}

/** Versions with a card (a version becomes visible only once its card is written, after its model file). */
export async function listCards(deps: CoreDeps, task: string): Promise<ModelCard[]> {
  const keys = await deps.store.list(storageKeys.modelsPrefix(task));
  const versions = keys.flatMap((key) => key.match(/\/models\/([^/]+)\/card\.json$/)?.[1] ?? []);
  const cards = await Promise.all(versions.map((version) => findCard(deps, task, version)));
  return cards
    .filter((card): card is ModelCard => card !== undefined)
    .sort((a, b) => versionNumber(a.version) - versionNumber(b.version));
}

const versionNumber = (version: string) => Number(version.replace(/^v/, '')) || 0;

export async function findCurrent(deps: CoreDeps, task: string): Promise<Current | undefined> {
  return (await findJson(deps.store, storageKeys.current(task), CurrentSchema))?.value;
}

export async function getModelFile(deps: CoreDeps, task: string, version: string) {
  await getCard(deps, task, version);
  return deps.store.get(storageKeys.modelFile(task, version));
}

/**
 * Points the task at `version` with a conditional write on current.json. `expected` (the version the caller
 * believed current) turns a concurrent promotion into a CONFLICT instead of a silent overwrite.
 */
export async function setCurrent(
  deps: CoreDeps,
  task: string,
  version: string,
  { reason, expected }: { reason: string; expected?: string | null },
): Promise<Current> {
  const file = await getModelFile(deps, task, version);
  try {
    const { value } = await updateJson(
      deps.store,
      storageKeys.current(task),
      CurrentSchema,
      (current) => {
        if (expected !== undefined && (current?.version ?? null) !== expected) {
          throw new GraftError(
            'CONFLICT',
            `The model in service changed to ${current?.version ?? 'none'} while ${version} was being promoted; check GET /v1/tasks/${task} and try again.`,
          );
        }
        // The versions served before, most recent first, each once.
        const earlier = current ? [current.version, ...current.history] : [];
        const history = earlier.filter((v, i) => v !== version && earlier.indexOf(v) === i);
        return { version, etag: file.etag, promotedAt: nowIso(deps), reason, history: history.slice(0, 50) };
      },
      { attempts: expected === undefined ? 10 : 1 },
    );
    return value;
  } catch (err) {
    if (isCode(err, 'PRECONDITION_FAILED')) {
      throw new GraftError(
        'CONFLICT',
        `Another promotion of task "${task}" happened at the same time; try again.`,
      );
    }
    throw err;
  }
}

/** `POST /v1/tasks/{task}/models/{version}/promote`: a person's decision, so the gate does not apply. */
export async function promote(deps: CoreDeps, task: string, version: string): Promise<Current> {
  await getTask(deps, task);
  return setCurrent(deps, task, version, { reason: 'promoted by request' });
}

/** `POST /v1/tasks/{task}/rollback`: back to the version that was in service before the current one. */
export async function rollback(deps: CoreDeps, task: string): Promise<Current> {
  await getTask(deps, task);
  const current = await findCurrent(deps, task);
  const previous = current?.history[0];
  if (!current || !previous) {
    throw new GraftError('NO_MODEL', `Task "${task}" has no earlier model version to roll back to.`);
  }
  const file = await getModelFile(deps, task, previous);
  const { value } = await updateJson(deps.store, storageKeys.current(task), CurrentSchema, (latest) => {
    if (latest?.version !== current.version) {
      throw new GraftError('CONFLICT', `The model in service changed while rolling back; try again.`);
    }
    return {
      version: previous,
      etag: file.etag,
      promotedAt: nowIso(deps),
      reason: `rolled back from ${current.version}`,
      history: current.history.slice(1),
    };
  });
  return value;
}
