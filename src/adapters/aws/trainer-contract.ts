import { ENV } from '../../config.js';

// What the Batch job definition (cdk/) and the trainer main agree on. No other imports: the CDK app loads this.

/**
 * Env vars of the Batch trainer beyond AwsConfig. `AWS_BATCH_JOB_ATTEMPT` is set by Batch (1 on the first
 * attempt); the stack sets the attempt limit so the last attempt records a failure instead of leaving it for a
 * retry that will not come.
 */
export const TRAINER_ENV = {
  jobId: ENV.jobId,
  batchJobId: ENV.batchJobId,
  attempt: ENV.batchJobAttempt,
  maxAttempts: ENV.trainerMaxAttempts,
} as const;

/** Exit codes the job definition's retry strategy keys on. */
export const TRAINER_EXIT = {
  /** The job succeeded or was cancelled, or another live worker has it. */
  done: 0,
  /** The attempt failed for a reason that may pass (storage or queue unavailable, a crash): retry. */
  retry: 1,
  /** The job failed for good; its record says why. Retrying cannot help. */
  failed: 2,
} as const;

/**
 * The worker id the trainer writes into the job record: the Batch job's own id (AWS_BATCH_JOB_ID) and attempt
 * (AWS_BATCH_JOB_ATTEMPT, from 1). It lets a Batch failure event tell the heartbeats of its own (now stopped)
 * containers from those of another Batch job running the same Graft job, whatever its attempt.
 */
export function trainerWorkerId(batchJobId: string, attempt: number): string {
  return `batch-${batchJobId}-${attempt}`;
}
