import { createHash } from 'node:crypto';
import { type BatchClient, SubmitJobCommand } from '@aws-sdk/client-batch';
import { GraftError } from '../../errors.js';
import type { JobLauncher } from '../../ports/job-launcher.js';
import { describeAwsFailure } from './aws-errors.js';
import { TRAINER_ENV } from './trainer-contract.js';

export interface BatchJobLauncherOptions {
  /** Job queue name or ARN. */
  jobQueue: string;
  /** Job definition name (its latest active revision) or ARN. */
  jobDefinition: string;
}

const NAME_PREFIX = 'graft-';
const MAX_NAME = 128;

/** Batch job names hold 1-128 letters, digits, `-` and `_`, and start with a letter or digit. */
export function batchJobName(jobId: string): string {
  const cleaned = jobId.replace(/[^A-Za-z0-9_-]/g, '-');
  if (cleaned === jobId && NAME_PREFIX.length + cleaned.length <= MAX_NAME) return `${NAME_PREFIX}${cleaned}`;
  // Cleaning or cutting could make two ids collide: a hash of the original keeps them apart.
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 12);
  return `${NAME_PREFIX}${cleaned.slice(0, MAX_NAME - NAME_PREFIX.length - hash.length - 1)}-${hash}`;
}

/**
 * Starts the trainer for a job as an AWS Batch job. The Graft job id travels twice: as the container env var
 * the trainer reads, and as the job parameter `jobId` (visible in the Batch console next to the job name
 * `graft-{jobId}`). SubmitJob has no idempotency token: a second launch of the same job starts a second
 * container, which finds the job running or finished and exits, because the worker is idempotent by job id.
 */
export class BatchJobLauncher implements JobLauncher {
  readonly #client: BatchClient;
  readonly #jobQueue: string;
  readonly #jobDefinition: string;

  constructor(client: BatchClient, { jobQueue, jobDefinition }: BatchJobLauncherOptions) {
    this.#client = client;
    this.#jobQueue = jobQueue;
    this.#jobDefinition = jobDefinition;
  }

  async launch(jobId: string): Promise<void> {
    await this.submit(jobId);
  }

  /** Like `launch`, returning the Batch job id. */
  async submit(jobId: string): Promise<{ batchJobId: string; jobName: string }> {
    const jobName = batchJobName(jobId);
    try {
      const out = await this.#client.send(
        new SubmitJobCommand({
          jobName,
          jobQueue: this.#jobQueue,
          jobDefinition: this.#jobDefinition,
          parameters: { jobId },
          containerOverrides: { environment: [{ name: TRAINER_ENV.jobId, value: jobId }] },
        }),
      );
      return { batchJobId: out.jobId ?? '', jobName };
    } catch (err) {
      const failure = describeAwsFailure(err);
      throw new GraftError(
        failure.transient ? 'QUEUE_UNAVAILABLE' : 'INTERNAL',
        `AWS Batch could not start job ${jobId} on queue ${this.#jobQueue} (${failure.name}: ${failure.message}).`,
        { cause: err, details: { jobId } },
      );
    }
  }
}
