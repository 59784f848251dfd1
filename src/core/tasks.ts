import { z } from 'zod';
import { GraftError } from '../errors.js';
import { checkName } from '../names.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, updateJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';

export const STRATEGIES = ['auto', 'zero-shot', 'centroid', 'logistic', 'mlp'] as const;

/** Training options of a task beyond the head: data preparation and use of unlabelled rows. */
export const TrainingOptionsSchema = z
  .object({
    /** Pseudo-label unlabelled rows above this calibrated probability and retrain while validation holds. */
    selfTraining: z
      .object({
        threshold: z.number().min(0.5).max(1).default(0.9),
        maxRounds: z.number().int().min(1).max(10).default(3),
      })
      .strict()
      .or(z.literal(false))
      .default(false),
    /**
     * The seed of the task's jobs (initialisation, shuffling, folds, rehearsal sample), unless a job names its own
     * in `hyperparameters.seed`. The validation split of each dataset version does not depend on it.
     */
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31)
      .default(42),
    /** Rows of earlier dataset versions kept in a retrain (rehearsal), at most this many per label. */
    rehearsalPerLabel: z.number().int().min(0).max(100_000).default(500),
    /** Image augmentation: extra shifted/rotated/noisy copies of each training image (off by default). */
    augment: z
      .object({
        copies: z.number().int().min(1).max(16).default(2),
        shift: z.number().int().min(0).max(8).default(2),
        rotate: z.number().min(0).max(45).default(10),
        noise: z.number().min(0).max(64).default(8),
        flip: z.boolean().default(false),
      })
      .strict()
      .or(z.literal(false))
      .default(false),
  })
  .strict();
export type TrainingOptions = z.infer<typeof TrainingOptionsSchema>;

export const PromotionPolicySchema = z
  .object({
    /** `gate`: promote only if the candidate does not lose to the model in service; `always`; `manual`: never on its own. */
    mode: z.enum(['gate', 'always', 'manual']).default('gate'),
    /** Largest allowed drop of validation macro-F1 against the model in service (0 = must not drop). */
    maxMacroF1Drop: z.number().min(0).max(1).default(0),
    /** Largest allowed drop of any class's F1. */
    maxClassF1Drop: z.number().min(0).max(1).default(0.05),
  })
  .strict();
export type PromotionPolicy = z.infer<typeof PromotionPolicySchema>;

export const TaskSchema = z.object({
  name: z.string(),
  backbone: z.string(),
  labels: z.array(z.string()).optional(),
  /** What each label means, for zero-shot starts (embedded by the backbone). */
  labelDescriptions: z.record(z.string(), z.string()).optional(),
  strategy: z.enum(STRATEGIES),
  training: TrainingOptionsSchema.default(TrainingOptionsSchema.parse({})),
  autoTrain: z.boolean(),
  promotion: PromotionPolicySchema,
  /** The next model version number; taken by each new job so that versions never collide. */
  nextVersion: z.number().int().positive(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Task = z.infer<typeof TaskSchema>;

/** The body of `PUT /v1/tasks/{task}`: every field optional, unknown fields rejected. */
export const TaskInputSchema = z
  .object({
    backbone: z.string().min(1).max(63),
    labels: z
      .array(
        z.union([
          z.string().trim().min(1).max(200),
          z
            .object({ name: z.string().trim().min(1).max(200), description: z.string().trim().max(2000) })
            .strict(),
        ]),
      )
      .min(2)
      .max(10_000),
    // Checked against TrainingOptionsSchema once merged with the task's current options (see putTask).
    training: z.record(z.string(), z.unknown()),
    strategy: z.enum(STRATEGIES),
    autoTrain: z.boolean(),
    promotion: PromotionPolicySchema,
  })
  .partial()
  .strict();
export type TaskInput = z.infer<typeof TaskInputSchema>;

/** Creates the task or updates the given fields of an existing one (the API checks that its backbone exists). */
export async function putTask(
  deps: CoreDeps,
  name: string,
  input: TaskInput,
): Promise<{ task: Task; created: boolean }> {
  checkName(name, 'task name');
  const { labels: labelInput, training, ...rest } = input;
  const labels = labelInput?.map((label) => (typeof label === 'string' ? label : label.name));
  if (labels && new Set(labels).size !== labels.length) {
    throw new GraftError('INVALID_OPTIONS', 'labels must be distinct: remove the repeated label names.');
  }
  const described = labelInput?.flatMap((label) =>
    typeof label === 'string' || !label.description ? [] : [[label.name, label.description] as const],
  );
  const checked =
    training && TrainingOptionsSchema.safeParse({ ...TrainingOptionsSchema.parse({}), ...training });
  if (checked && !checked.success) {
    const problems = checked.error.issues.map((i) => `training.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new GraftError('INVALID_OPTIONS', `Invalid training options (${problems}).`);
  }
  let created = false;
  const { value } = await updateJson(deps.store, storageKeys.task(name), TaskSchema, (current) => {
    const now = nowIso(deps);
    created = current === undefined;
    const base: Task = current ?? {
      name,
      backbone: 'hash-ngrams',
      strategy: 'auto',
      autoTrain: true,
      promotion: PromotionPolicySchema.parse({}),
      training: TrainingOptionsSchema.parse({}),
      nextVersion: 1,
      createdAt: now,
      updatedAt: now,
    };
    return {
      ...base,
      ...rest,
      ...(labels ? { labels, labelDescriptions: Object.fromEntries(described ?? []) } : {}),
      training: training ? TrainingOptionsSchema.parse({ ...base.training, ...training }) : base.training,
      promotion: rest.promotion
        ? PromotionPolicySchema.parse({ ...base.promotion, ...rest.promotion })
        : base.promotion,
      updatedAt: now,
    };
  });
  return { task: value, created };
}

export async function findTask(deps: CoreDeps, name: string): Promise<Task | undefined> {
  return (await findJson(deps.store, storageKeys.task(checkName(name, 'task name')), TaskSchema))?.value;
}

export async function getTask(deps: CoreDeps, name: string): Promise<Task> {
  const task = await findTask(deps, name);
  if (!task) {
    throw new GraftError(
      'TASK_NOT_FOUND',
      `Task "${name}" does not exist. Create it first with PUT /v1/tasks/${name} (or \`graft tasks create ${name}\`).`,
    );
  }
  return task;
}

export async function listTasks(deps: CoreDeps): Promise<Task[]> {
  const keys = await deps.store.list(storageKeys.tasksPrefix());
  const names = keys.flatMap((key) => key.match(/^tasks\/([^/]+)\/task\.json$/)?.[1] ?? []);
  const tasks = await Promise.all(names.map((name) => findTask(deps, name)));
  return tasks.filter((task): task is Task => task !== undefined);
}

/** Takes the next model version number of a task (a conditional write, so two jobs never share one). */
export async function reserveModelVersion(deps: CoreDeps, name: string): Promise<string> {
  let version = 0;
  await updateJson(deps.store, storageKeys.task(name), TaskSchema, (current) => {
    if (!current) throw new GraftError('TASK_NOT_FOUND', `Task "${name}" does not exist.`);
    version = current.nextVersion;
    return { ...current, nextVersion: current.nextVersion + 1 };
  });
  return `v${version}`;
}
