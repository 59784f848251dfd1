import type { AwsConfig } from '../../config.js';
import { JobBusyError, runJob } from '../../core/worker.js';
import { GraftError, toGraftError } from '../../errors.js';
import { checkName } from '../../names.js';
import { availableExecutionProviders } from '../../runtime/onnx.js';
import { type AwsClients, createAwsDeps } from './deps.js';
import { TRAINER_ENV, TRAINER_EXIT, trainerWorkerId } from './trainer-contract.js';

export interface TrainerInput {
  jobId: string;
  /** AWS Batch's id of this Batch job; outside Batch (a test, a manual run) the Graft job id stands in. */
  batchJobId: string;
  attempt: number;
  maxAttempts: number;
}

/** Reads the trainer's own variables, failing fast with the one that is wrong. */
export function trainerInputFromEnv(env: Record<string, string | undefined>): TrainerInput {
  const jobId = env[TRAINER_ENV.jobId];
  if (!jobId) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `${TRAINER_ENV.jobId} is not set: the Batch launcher passes the job id.`,
    );
  }
  const attempt = Number(env[TRAINER_ENV.attempt] ?? '1');
  const maxAttempts = Number(env[TRAINER_ENV.maxAttempts] ?? '1');
  if (!Number.isInteger(attempt) || attempt < 1 || !Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `${TRAINER_ENV.attempt} and ${TRAINER_ENV.maxAttempts} must be whole numbers from 1 (got ${attempt}, ${maxAttempts}).`,
    );
  }
  const checked = checkName(jobId, 'job id');
  return { jobId: checked, batchJobId: env[TRAINER_ENV.batchJobId] || checked, attempt, maxAttempts };
}

export interface TrainerOptions {
  clients?: AwsClients;
  /** How often the job record is touched while training. @default 5000 */
  heartbeatMs?: number;
}

/**
 * Runs one job in the Batch container with the same worker as local mode, and says how the container should
 * exit. When another worker's heartbeat is fresh (Batch restarted us right after a crash), waits until it would
 * be stale and tries once more.
 */
export async function runTrainer(
  config: AwsConfig,
  { jobId, batchJobId, attempt, maxAttempts }: TrainerInput,
  { clients, heartbeatMs = 5_000 }: TrainerOptions = {},
): Promise<number> {
  // CUDA in the GPU container (backbone features, parity checks), CPU elsewhere.
  const deps = {
    ...createAwsDeps(config, { clients }),
    executionProviders: await availableExecutionProviders(),
  };
  const options = {
    heartbeatMs,
    workerId: trainerWorkerId(batchJobId, attempt),
    lastAttempt: attempt >= maxAttempts,
  };
  deps.log.info('trainer started', {
    jobId,
    attempt,
    maxAttempts,
    executionProviders: deps.executionProviders,
  });
  for (let busyRounds = 0; ; busyRounds++) {
    try {
      const job = await runJob(deps, jobId, options);
      deps.log.info('trainer finished', { jobId, status: job.status, modelVersion: job.modelVersion });
      return job.status === 'failed' ? TRAINER_EXIT.failed : TRAINER_EXIT.done;
    } catch (err) {
      if (err instanceof JobBusyError) {
        if (busyRounds >= 1) {
          deps.log.info('another live worker holds the job; leaving it', { jobId });
          return TRAINER_EXIT.done;
        }
        await new Promise((resolve) => setTimeout(resolve, heartbeatMs * 4 + 1_000));
        continue;
      }
      const error = toGraftError(err);
      deps.log.error('trainer attempt failed', { jobId, attempt, code: error.code, message: error.message });
      return TRAINER_EXIT.retry;
    }
  }
}
