import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { type ErrorCode, GraftError, toGraftError } from '../errors.js';
import { checkName } from '../names.js';
import { MAX_DELIVERIES } from './delivery.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, updateJson, writeJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';
import { getTask, reserveModelVersion, STRATEGIES } from './tasks.js';

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const JOB_STAGES = [
  'validating',
  'embedding',
  'training',
  'evaluating',
  'exporting',
  'publishing',
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export type JobStage = (typeof JOB_STAGES)[number];

export const HyperparametersInputSchema = z
  .object({
    learningRate: z.number().positive().max(10),
    weightDecay: z.number().min(0).max(10),
    batchSize: z.number().int().min(1).max(65_536),
    maxEpochs: z.number().int().min(1).max(1000),
    patience: z.number().int().min(1).max(1000),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31),
  })
  .partial()
  .strict();

export const JobInputSchema = z
  .object({
    datasets: z.array(z.string()).min(1).max(1000).optional(),
    strategy: z.enum(STRATEGIES).optional(),
    hyperparameters: HyperparametersInputSchema.optional(),
  })
  .strict();
export type JobInput = z.infer<typeof JobInputSchema>;

const JobEventSchema = z.object({ at: z.string(), stage: z.string().optional(), message: z.string() });

export const JobSchema = z.object({
  id: z.string(),
  task: z.string(),
  status: z.enum(JOB_STATUSES),
  stage: z.enum(JOB_STAGES).optional(),
  progress: z.number(),
  datasets: z.array(z.string()),
  strategy: z.enum(STRATEGIES).optional(),
  hyperparameters: HyperparametersInputSchema.optional(),
  /** Reserved when the job is created, so a retried delivery writes the same version and never a second one. */
  modelVersion: z.string(),
  promoted: z.boolean().optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  cancelRequested: z.boolean().optional(),
  attempts: z.number().int(),
  worker: z.object({ id: z.string(), heartbeatAt: z.string() }).optional(),
  events: z.array(JobEventSchema),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Job = z.infer<typeof JobSchema>;

export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
export const isTerminal = (job: Job) => TERMINAL_STATUSES.includes(job.status);

/** Job ids sort by creation time and are valid names: `job-<time base36>-<random>`. */
export function newJobId(now = Date.now()): string {
  return `job-${now.toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Records a queued job and sends it to the queue. If the queue refuses it, the job is marked failed. */
export async function createJob(deps: CoreDeps, taskName: string, input: JobInput & { datasets: string[] }) {
  const task = await getTask(deps, taskName);
  const modelVersion = await reserveModelVersion(deps, task.name);
  const at = nowIso(deps);
  const job: Job = {
    id: newJobId(),
    task: task.name,
    status: 'queued',
    progress: 0,
    datasets: input.datasets,
    strategy: input.strategy ?? task.strategy,
    hyperparameters: input.hyperparameters,
    modelVersion,
    attempts: 0,
    events: [{ at, message: `queued: train ${modelVersion} on ${input.datasets.join(', ')}` }],
    createdAt: at,
    updatedAt: at,
  };
  await writeJson(deps.store, storageKeys.job(job.id), job, { ifNoneMatch: '*' });
  try {
    await deps.queue.send({ type: 'train', jobId: job.id });
  } catch (err) {
    const cause = toGraftError(err);
    await updateJob(deps, job.id, (current) => ({
      ...current,
      status: 'failed',
      error: { code: 'QUEUE_UNAVAILABLE', message: `The job could not be queued: ${cause.message}` },
    }));
    throw new GraftError(
      'QUEUE_UNAVAILABLE',
      'The job queue is unavailable; the dataset is stored, retry the job.',
      {
        cause,
      },
    );
  }
  return job;
}

export async function findJob(deps: CoreDeps, jobId: string) {
  if (!/^job-[a-z0-9-]{1,60}$/.test(jobId)) return undefined;
  return findJson(deps.store, storageKeys.job(jobId), JobSchema);
}

export async function getJob(deps: CoreDeps, jobId: string): Promise<Job> {
  const found = await findJob(deps, jobId);
  if (!found) {
    throw new GraftError(
      'JOB_NOT_FOUND',
      `Job "${jobId.slice(0, 80)}" does not exist. List jobs with GET /v1/jobs.`,
    );
  }
  return found.value;
}

/** Applies `change` to the job record with a conditional write (retried on concurrent writers). */
export async function updateJob(deps: CoreDeps, jobId: string, change: (job: Job) => Job) {
  checkName(jobId, 'job id');
  return updateJson(deps.store, storageKeys.job(jobId), JobSchema, (current) => {
    if (!current) throw new GraftError('JOB_NOT_FOUND', `Job "${jobId}" does not exist.`);
    return { ...change(current), updatedAt: nowIso(deps) };
  });
}

/** Appends a timestamped event (kept to the last 200). */
export function withEvent(job: Job, at: string, message: string): Job {
  const events = [...job.events, { at, stage: job.stage, message }].slice(-200);
  return { ...job, events };
}

export async function listJobs(deps: CoreDeps, { task, limit = 50 }: { task?: string; limit?: number } = {}) {
  const keys = (await deps.store.list(storageKeys.jobsPrefix())).reverse();
  const jobs: Job[] = [];
  // Newest first: ids sort by creation time.
  for (const key of keys) {
    if (jobs.length >= limit) break;
    const found = await findJson(deps.store, key, JobSchema);
    if (found && (!task || found.value.task === task)) jobs.push(found.value);
  }
  return jobs;
}

/** Cancels a queued job at once; asks a running job to stop at its next checkpoint. */
export async function cancelJob(deps: CoreDeps, jobId: string): Promise<Job> {
  await getJob(deps, jobId);
  const { value } = await updateJob(deps, jobId, (job) => {
    if (isTerminal(job)) {
      throw new GraftError(
        'JOB_NOT_CANCELLABLE',
        `Job ${jobId} has already ${job.status}; there is nothing to cancel.`,
      );
    }
    const at = nowIso(deps);
    if (job.status === 'queued')
      return withEvent({ ...job, status: 'cancelled' }, at, 'cancelled before it started');
    return withEvent({ ...job, cancelRequested: true }, at, 'cancel requested');
  });
  return value;
}

/** How often a running job's worker writes a heartbeat, unless told otherwise. */
export const DEFAULT_HEARTBEAT_MS = 5_000;

/**
 * How long a running job's worker may go without a heartbeat before it is taken for dead: `staleAfterMs` when
 * given, else four missed heartbeats (20 s by default).
 */
export function staleAfter({
  heartbeatMs = DEFAULT_HEARTBEAT_MS,
  staleAfterMs,
}: StalenessOptions = {}): number {
  return staleAfterMs ?? heartbeatMs * 4;
}

export interface StalenessOptions {
  heartbeatMs?: number;
  staleAfterMs?: number;
}

/**
 * Whether the job is running on a live worker (a heartbeat younger than `staleAfterMs` at `now`), other than the
 * workers in `except`.
 */
export function heldByLiveWorker(
  job: Job,
  now: Date,
  staleAfterMs: number,
  except: readonly string[] = [],
): boolean {
  return (
    job.status === 'running' &&
    job.worker !== undefined &&
    !except.includes(job.worker.id) &&
    now.getTime() - Date.parse(job.worker.heartbeatAt) < staleAfterMs
  );
}

/** What `failAbandonedJob` found, and did. */
export type AbandonedJobOutcome =
  /** Marked failed with the abandonment's code. */
  | { outcome: 'failed'; job: Job }
  /** It had already ended (succeeded, failed, cancelled): left as it is. */
  | { outcome: 'ended'; job: Job }
  /** A live worker holds it (e.g. a duplicate delivery's): left to that worker; look again later. */
  | { outcome: 'held'; job: Job }
  | { outcome: 'unknown' };

/** Why nothing will finish a job any more, as `failAbandonedJob` records it. */
export interface Abandonment {
  code: ErrorCode;
  /** The job's error message, from the job as it stands (task, stage, attempts): what happened, how to retry. */
  reason: (job: Job) => string;
  /** What the job's event says after `failed: CODE`. */
  event: string;
  /**
   * Workers known to have stopped (their container is gone): a fresh heartbeat of theirs does not hold the job,
   * since it was written just before they died. @default none
   */
  stoppedWorkers?: readonly string[];
  /** A running job whose heartbeat is older than this has lost its worker. @default staleAfter() */
  staleAfterMs?: number;
}

/** Thrown out of an update to leave the record unwritten. */
class LeftAlone {
  constructor(readonly result: AbandonedJobOutcome) {}
}

/**
 * For a job that nothing will run again (its queue message was dead-lettered, its Batch job failed for good):
 * unless it has ended or a live worker still holds it, it is marked `failed` with the abandonment's code and
 * reason. The dataset is not touched. Idempotent, with a conditional write: a job that ends meanwhile is left
 * alone, and a second call for the same cause finds it ended.
 */
export async function failAbandonedJob(
  deps: CoreDeps,
  jobId: string,
  { code, reason, event, stoppedWorkers = [], staleAfterMs = staleAfter() }: Abandonment,
): Promise<AbandonedJobOutcome> {
  if (!(await findJob(deps, jobId))) return { outcome: 'unknown' };
  try {
    const { value } = await updateJob(deps, jobId, (job) => {
      if (isTerminal(job)) throw new LeftAlone({ outcome: 'ended', job });
      const now = deps.now?.() ?? new Date();
      if (heldByLiveWorker(job, now, staleAfterMs, stoppedWorkers))
        throw new LeftAlone({ outcome: 'held', job });
      return withEvent(
        { ...job, status: 'failed', worker: undefined, error: { code, message: reason(job) } },
        now.toISOString(),
        `failed: ${code} (${event})`,
      );
    });
    return { outcome: 'failed', job: value };
  } catch (err) {
    if (err instanceof LeftAlone) return err.result;
    throw err;
  }
}

/**
 * For a job message the queue gave up on after `deliveries` deliveries (a dead letter): no further delivery
 * will run the job, so it fails with DELIVERIES_EXHAUSTED (see `failAbandonedJob`).
 */
export function failDeadLetteredJob(
  deps: CoreDeps,
  jobId: string,
  { deliveries = MAX_DELIVERIES, staleAfterMs }: { deliveries?: number; staleAfterMs?: number } = {},
): Promise<AbandonedJobOutcome> {
  return failAbandonedJob(deps, jobId, {
    code: 'DELIVERIES_EXHAUSTED',
    reason: (job) => deadLetterReason(job, deliveries),
    event: `its queue message was dead-lettered after ${deliveries} deliveries`,
    staleAfterMs,
  });
}

/** How to train a failed job's data again: part of the reason of every job that nothing will finish. */
export function retryAdvice(job: Job): string {
  return (
    `The dataset is kept: retry with POST /v1/tasks/${job.task}/jobs and this job's datasets ` +
    `(or \`graft train ${job.task}\` for all of the task's datasets).`
  );
}

function deadLetterReason(job: Job, deliveries: number): string {
  if (job.attempts === 0) {
    return (
      `The job was delivered ${deliveries} times and never started: each delivery failed before a worker ` +
      `took it (the worker's or dispatcher's log says why). ${retryAdvice(job)}`
    );
  }
  const stage = job.stage ?? 'validating';
  return (
    `The worker stopped without finishing this job on all ${deliveries} deliveries (last stage: ${stage}); ` +
    `most likely it was killed (out of memory, or its process or machine stopped). ${retryAdvice(job)} If ` +
    'it stops at the same stage again, give the worker more memory or train on fewer rows.'
  );
}

/** The public view of a job (`GET /v1/jobs/{id}`). */
export function jobView(job: Job) {
  const { worker: _worker, attempts: _attempts, cancelRequested: _cancel, ...rest } = job;
  return rest;
}
