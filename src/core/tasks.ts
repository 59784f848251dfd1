import { z } from 'zod';
import { GraftError } from '../errors.js';
import { checkName } from '../names.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, updateJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';

export const STRATEGIES = ['auto', 'logistic'] as const;

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
  strategy: z.enum(STRATEGIES),
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
    backbone: z.literal('hash-ngrams'),
    labels: z.array(z.string().trim().min(1).max(200)).min(2).max(10_000),
    strategy: z.enum(STRATEGIES),
    autoTrain: z.boolean(),
    promotion: PromotionPolicySchema,
  })
  .partial()
  .strict();
export type TaskInput = z.infer<typeof TaskInputSchema>;

/** Creates the task or updates the given fields of an existing one. */
export async function putTask(
  deps: CoreDeps,
  name: string,
  input: TaskInput,
): Promise<{ task: Task; created: boolean }> {
  checkName(name, 'task name');
  if (input.labels && new Set(input.labels).size !== input.labels.length) {
    throw new GraftError('INVALID_OPTIONS', 'labels must be distinct: remove the repeated label names.');
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
      nextVersion: 1,
      createdAt: now,
      updatedAt: now,
    };
    return {
      ...base,
      ...input,
      promotion: input.promotion
        ? PromotionPolicySchema.parse({ ...base.promotion, ...input.promotion })
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
