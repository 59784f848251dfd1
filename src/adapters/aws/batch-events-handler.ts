import { z } from 'zod';
import type { AwsConfig } from '../../config.js';
import type { CoreDeps } from '../../core/deps.js';
import { type AbandonedJobOutcome, failAbandonedJob, type Job, retryAdvice } from '../../core/jobs.js';
import { toGraftError } from '../../errors.js';
import { batchJobName } from './batch-launcher.js';
import { type AwsClients, createAwsDeps } from './deps.js';
import { isRetryable } from './sqs-dispatcher.js';
import { TRAINER_ENV, trainerWorkerId } from './trainer-contract.js';

const ContainerSchema = z.object({
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  logStreamName: z.string().optional(),
});

/**
 * The parts of an AWS Batch "Batch Job State Change" event this handler reads; its `detail` is the job's
 * JobDetail as DescribeJobs returns it (https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html,
 * https://docs.aws.amazon.com/batch/latest/APIReference/API_JobDetail.html). Unknown fields are allowed: Batch
 * adds some over time. `container` describes the last attempt.
 */
const BatchJobFailedSchema = z.object({
  source: z.literal('aws.batch'),
  'detail-type': z.literal('Batch Job State Change'),
  detail: z.object({
    jobId: z.string(),
    jobName: z.string(),
    jobQueue: z.string(),
    status: z.literal('FAILED'),
    statusReason: z.string().optional(),
    parameters: z.record(z.string(), z.string()).optional(),
    attempts: z.array(z.object({ container: ContainerSchema.optional() })).optional(),
    container: ContainerSchema.extend({
      environment: z.array(z.object({ name: z.string(), value: z.string().optional() })).optional(),
      resourceRequirements: z.array(z.object({ type: z.string(), value: z.string() })).optional(),
    }).optional(),
    timeout: z.object({ attemptDurationSeconds: z.number().optional() }).optional(),
  }),
});
export type BatchJobFailedEvent = z.infer<typeof BatchJobFailedSchema>;
type FailedJobDetail = BatchJobFailedEvent['detail'];

/** What the handler did with one event; Lambda ignores it, logs and tests read it. */
export type BatchEventResult = AbandonedJobOutcome['outcome'] | 'ignored';

/**
 * Handles one "Batch Job State Change" event with status FAILED from the stack's job queue: the trainer's Batch
 * job has stopped for good (killed for memory, past its attempt timeout, or failed on its last attempt), so no
 * container will finish the Graft job it carried. That job is failed with TRAINER_STOPPED and a reason built
 * from what Batch says, unless it has ended (the trainer failed it itself, then exited 2), or a worker other
 * than this Batch job's containers holds it with a live heartbeat. An event that is not such a failure, or names
 * no Graft job, is logged and ignored; only a failure worth retrying (S3 unavailable) is thrown, for Lambda's
 * asynchronous retries.
 */
export async function handleBatchEvent(deps: CoreDeps, event: unknown): Promise<BatchEventResult> {
  const parsed = BatchJobFailedSchema.safeParse(event);
  if (!parsed.success) {
    deps.log.warn('not a Batch job failure event; ignored', {
      event: JSON.stringify(event ?? null).slice(0, 4000),
      issues: parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.join('.')}: ${issue.message}`),
    });
    return 'ignored';
  }
  const { detail } = parsed.data;
  const evidence = {
    batchJobId: detail.jobId,
    batchJobName: detail.jobName,
    statusReason: detail.statusReason,
    exitCode: detail.container?.exitCode,
    containerReason: detail.container?.reason,
  };
  const jobId = graftJobIdOf(detail);
  if (!jobId) {
    deps.log.warn('failed Batch job carries no Graft job id; ignored', evidence);
    return 'ignored';
  }
  try {
    const attempts = detail.attempts?.length ?? 0;
    const result = await failAbandonedJob(deps, jobId, {
      code: 'TRAINER_STOPPED',
      reason: (job) => trainerStoppedReason(detail, job),
      event: `AWS Batch job ${detail.jobId} failed after ${attempts} attempt(s)`,
      // Every container of this Batch job has stopped: a heartbeat of theirs, however recent, is a dead one.
      stoppedWorkers: Array.from({ length: attempts }, (_, i) => trainerWorkerId(detail.jobId, i + 1)),
    });
    if (result.outcome === 'failed') {
      deps.log.error('job failed: AWS Batch stopped its trainer', {
        ...evidence,
        jobId,
        reason: result.job.error?.message,
      });
    } else {
      deps.log.warn('failed Batch job; nothing to fail', {
        ...evidence,
        jobId,
        status: result.outcome === 'unknown' ? 'no such job' : result.job.status,
        worker: result.outcome === 'held' ? result.job.worker?.id : undefined,
      });
    }
    return result.outcome;
  } catch (err) {
    const error = toGraftError(err);
    if (isRetryable(error)) {
      deps.log.warn('Batch job failure not recorded; Lambda will retry the event', {
        ...evidence,
        jobId,
        code: error.code,
        message: error.message,
      });
      throw error;
    }
    deps.log.error('Batch job failure dropped', {
      ...evidence,
      jobId,
      code: error.code,
      message: error.message,
    });
    return 'ignored';
  }
}

/**
 * The Graft job id a Batch job carries, as BatchJobLauncher submits it: the `jobId` parameter (the job
 * definition's default is "none"), the trainer's env var, or the job name `graft-{jobId}` when it was not
 * shortened.
 */
export function graftJobIdOf(detail: FailedJobDetail): string | undefined {
  const parameter = detail.parameters?.jobId;
  if (parameter && parameter !== 'none') return parameter;
  const env = detail.container?.environment?.find((entry) => entry.name === TRAINER_ENV.jobId)?.value;
  if (env) return env;
  const fromName = detail.jobName.replace(/^graft-/, '');
  return fromName !== detail.jobName && batchJobName(fromName) === detail.jobName ? fromName : undefined;
}

/** What Batch said, in one line, and what to change before retrying. */
export function trainerStoppedReason(detail: FailedJobDetail, job: Job): string {
  const container = detail.container ?? {};
  const said = [container.reason, detail.statusReason].filter((text): text is string => Boolean(text));
  const cause = [...new Set(said)].join('; ') || 'no reason given';
  const exit = container.exitCode === undefined ? '' : ` (exit ${container.exitCode})`;
  const where = job.attempts === 0 ? 'before the trainer started' : `at stage ${job.stage ?? 'validating'}`;
  return `AWS Batch stopped the trainer ${where}: ${cause}${exit}. ${advice(detail)} ${retryAdvice(job)}`;
}

// The stack's settings behind each advice are the context keys graft:trainerMemoryGiB, graft:jobTimeoutMinutes
// and graft:gpu (cdk/context.ts).
function advice(detail: FailedJobDetail): string {
  const container = detail.container ?? {};
  const timeout = detail.timeout?.attemptDurationSeconds;
  if (/timeout/i.test(detail.statusReason ?? '')) {
    const limit = timeout === undefined ? 'its timeout' : `its ${Math.round(timeout / 60)}-minute timeout`;
    return (
      `The attempt ran past ${limit}: train on fewer rows or a smaller backbone, train on GPUs ` +
      '(graft:gpu=true) if the stack trains on CPUs, or deploy again with a larger graft:jobTimeoutMinutes.'
    );
  }
  if (/OutOfMemory/i.test(container.reason ?? '') || container.exitCode === 137) {
    const mib = detail.container?.resourceRequirements?.find((r) => r.type === 'MEMORY')?.value;
    const had = mib === undefined ? '' : ` (it had ${mib} MiB)`;
    return (
      `The trainer ran out of memory${had}: train on fewer rows, or deploy again with a larger ` +
      'graft:trainerMemoryGiB (Batch then picks a larger instance).'
    );
  }
  const log = container.logStreamName ? ` (log stream ${container.logStreamName})` : '';
  return `The trainer's log in CloudWatch${log} says why.`;
}

/** The Batch events Lambda's handler: one EventBridge event in; throws only to have Lambda retry it. */
export function createBatchEventsHandler(
  config: AwsConfig,
  options: { clients?: AwsClients } = {},
): (event: unknown) => Promise<BatchEventResult> {
  const deps = createAwsDeps(config, options);
  return (event) => handleBatchEvent(deps, event);
}
