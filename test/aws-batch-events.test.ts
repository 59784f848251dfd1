import { randomUUID } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchEventsHandler, handleBatchEvent } from '../src/adapters/aws/batch-events-handler.js';
import { batchJobName } from '../src/adapters/aws/batch-launcher.js';
import { type AwsClients, createAwsClients, createAwsDeps } from '../src/adapters/aws/deps.js';
import { trainerWorkerId } from '../src/adapters/aws/trainer-contract.js';
import type { AwsConfig } from '../src/config.js';
import type { CoreDeps } from '../src/core/deps.js';
import { getJob, type Job, newJobId } from '../src/core/jobs.js';
import { writeJson } from '../src/core/json-objects.js';
import { createLogger, silentLogger } from '../src/core/logger.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { type LocalAws, startLocalAws, testAwsConfig, unreachableAws } from './fixtures/aws/local-aws.js';

const BUCKET = 'graft-batch-events';
const JOB_QUEUE = 'arn:aws:batch:us-east-1:123456789012:job-queue/TrainingBatchJobQueue-0a1b2c3d';
const OOM = 'OutOfMemoryError: Container killed due to memory usage';

let aws: LocalAws;
let clients: AwsClients;
let config: AwsConfig;

beforeAll(async () => {
  aws = await startLocalAws();
  clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  config = testAwsConfig(aws, {
    bucket: BUCKET,
    // required by the AWS configuration; the handler never uses the queue
    queueUrl: 'http://sqs.us-east-1.localhost/000000000000/graft-jobs',
  });
});

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await aws?.stop();
});

interface Attempt {
  exitCode?: number;
  reason?: string;
  statusReason?: string;
}

/**
 * The "Batch Job State Change" event AWS Batch sends to EventBridge when a job ends FAILED, for a job
 * BatchJobLauncher submitted. Shape from the AWS Batch user guide, "Job state change events"
 * (https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html): `detail` is the JobDetail of
 * DescribeJobs (https://docs.aws.amazon.com/batch/latest/APIReference/API_JobDetail.html), whose `container`
 * describes the last attempt.
 */
function batchJobFailedEvent(
  jobId: string,
  {
    attempts = [{ exitCode: 137, reason: OOM }] as Attempt[],
    statusReason = 'Essential container in task exited',
    batchJobId = randomUUID(),
  } = {},
) {
  const last = attempts.at(-1);
  const logStreamName = `trainer/default/${randomUUID().replaceAll('-', '')}`;
  const started = 1768212000000;
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Batch Job State Change',
    source: 'aws.batch',
    account: '123456789012',
    time: '2026-01-12T10:30:00Z',
    region: 'us-east-1',
    resources: [`arn:aws:batch:us-east-1:123456789012:job/${batchJobId}`],
    detail: {
      jobArn: `arn:aws:batch:us-east-1:123456789012:job/${batchJobId}`,
      jobName: batchJobName(jobId),
      jobId: batchJobId,
      jobQueue: JOB_QUEUE,
      status: 'FAILED',
      statusReason,
      attempts: attempts.map((attempt, i) => ({
        container: {
          containerInstanceArn: 'arn:aws:ecs:us-east-1:123456789012:container-instance/graft/5f2b',
          taskArn: `arn:aws:ecs:us-east-1:123456789012:task/graft/${i}a7c`,
          exitCode: attempt.exitCode,
          reason: attempt.reason,
          logStreamName,
          networkInterfaces: [],
        },
        startedAt: started + i * 600_000,
        stoppedAt: started + i * 600_000 + 300_000,
        statusReason: attempt.statusReason ?? statusReason,
      })),
      createdAt: started - 60_000,
      retryStrategy: {
        attempts: 3,
        evaluateOnExit: [
          { onExitCode: '1', action: 'retry' },
          { onExitCode: '*', action: 'exit' },
        ],
      },
      startedAt: started,
      stoppedAt: started + (attempts.length - 1) * 600_000 + 300_000,
      dependsOn: [],
      jobDefinition:
        'arn:aws:batch:us-east-1:123456789012:job-definition/TrainingTrainerJobDefinition-9f8e:1',
      parameters: { jobId },
      container: {
        image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets:4b1f',
        command: [],
        jobRoleArn: 'arn:aws:iam::123456789012:role/Graft-TrainingTrainerRole',
        volumes: [],
        environment: [
          { name: 'GRAFT_BUCKET', value: BUCKET },
          { name: 'GRAFT_JOB_ID', value: jobId },
          { name: 'GRAFT_TRAINER_MAX_ATTEMPTS', value: '3' },
        ],
        mountPoints: [],
        ulimits: [],
        exitCode: last?.exitCode,
        reason: last?.reason,
        containerInstanceArn: 'arn:aws:ecs:us-east-1:123456789012:container-instance/graft/5f2b',
        taskArn: `arn:aws:ecs:us-east-1:123456789012:task/graft/${attempts.length - 1}a7c`,
        logStreamName,
        networkInterfaces: [],
        resourceRequirements: [
          { value: '4', type: 'VCPU' },
          { value: '14336', type: 'MEMORY' },
          { value: '1', type: 'GPU' },
        ],
        secrets: [],
      },
      timeout: { attemptDurationSeconds: 7200 },
      tags: { resourceArn: `arn:aws:batch:us-east-1:123456789012:job/${batchJobId}` },
      propagateTags: false,
      platformCapabilities: ['EC2'],
      eksAttempts: [],
    },
  };
}

/** Writes a job record as the API and the trainer leave it (`changes` on top of a queued job). */
async function jobRecord(deps: CoreDeps, changes: Partial<Job> = {}): Promise<Job> {
  const at = new Date().toISOString();
  const job: Job = {
    id: newJobId(),
    task: 'support',
    status: 'queued',
    progress: 0,
    datasets: ['ds-1'],
    modelVersion: 'v1',
    attempts: 0,
    events: [{ at, message: 'queued: train v1 on ds-1' }],
    createdAt: at,
    updatedAt: at,
    ...changes,
  };
  await writeJson(deps.store, storageKeys.job(job.id), job, { ifNoneMatch: '*' });
  return job;
}

/** A job the trainer of a Batch job's attempt `attempt` is running, with a heartbeat written just now. */
const running = (jobId: string, batchJobId: string, attempt: number): Partial<Job> => ({
  id: jobId,
  status: 'running',
  stage: 'training',
  progress: 0.4,
  attempts: attempt,
  worker: { id: trainerWorkerId(batchJobId, attempt), heartbeatAt: new Date().toISOString() },
});

function logged() {
  const lines: Record<string, unknown>[] = [];
  const deps = createAwsDeps(config, {
    clients,
    log: createLogger('info', (line) => lines.push(JSON.parse(line))),
  });
  return { deps, lines };
}

describe('the Batch events handler against S3 on 127.0.0.1', () => {
  it('fails a running job whose trainer Batch killed for memory, with the reason, once', async () => {
    // given a job whose trainer was just killed: its last heartbeat is seconds old
    const deps = createAwsDeps(config, { clients, log: silentLogger });
    const jobId = newJobId();
    const batchJobId = randomUUID();
    await jobRecord(deps, running(jobId, batchJobId, 1));
    const event = batchJobFailedEvent(jobId, { batchJobId });

    // when the handler (as the Lambda runtime builds it) gets Batch's FAILED event
    const handler = createBatchEventsHandler(config, { clients });
    expect(await handler(event)).toBe('failed');

    // then the job failed, saying what Batch said, what to change and how to retry
    const failed = await getJob(deps, jobId);
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'TRAINER_STOPPED' } });
    expect(failed.worker).toBeUndefined();
    const message = failed.error?.message ?? '';
    expect(message).toMatch(
      /^AWS Batch stopped the trainer at stage training: OutOfMemoryError: Container killed due to memory usage; Essential container in task exited \(exit 137\)\./,
    );
    expect(message).toContain('ran out of memory (it had 14336 MiB)');
    expect(message).toContain('graft:trainerMemoryGiB');
    expect(message).toContain('retry with POST /v1/tasks/support/jobs');
    expect(failed.events.at(-1)?.message).toMatch(
      /^failed: TRAINER_STOPPED \(AWS Batch job .+ failed after 1 attempt/,
    );

    // when EventBridge delivers the same event again (at least once), the job is left as it is
    expect(await handler(event)).toBe('ended');
    expect(await getJob(deps, jobId)).toEqual(failed);
  });

  it('fails a job whose last attempt ran past its timeout, and a job Batch never started', async () => {
    const deps = createAwsDeps(config, { clients, log: silentLogger });
    // given a job on its third attempt when the timeout struck
    const timedOut = newJobId();
    const batchJobId = randomUUID();
    await jobRecord(deps, running(timedOut, batchJobId, 3));
    const timeout = batchJobFailedEvent(timedOut, {
      batchJobId,
      attempts: [{ exitCode: 1 }, { exitCode: 1 }, { exitCode: 137 }],
      statusReason: 'Job attempt duration exceeded timeout',
    });
    // and a queued job whose image Batch could not pull
    const unpulled = (await jobRecord(deps)).id;
    const pull = batchJobFailedEvent(unpulled, {
      attempts: [{ reason: 'CannotPullContainerError: pull image manifest has been retried 5 time(s)' }],
      statusReason: 'Task failed to start',
    });
    // when
    expect(await handleBatchEvent(deps, timeout)).toBe('failed');
    expect(await handleBatchEvent(deps, pull)).toBe('failed');
    // then
    const first = (await getJob(deps, timedOut)).error?.message;
    expect(first).toMatch(
      /^AWS Batch stopped the trainer at stage training: Job attempt duration exceeded timeout \(exit 137\)/,
    );
    expect(first).toContain('ran past its 120-minute timeout');
    expect(first).toContain('graft:gpu=true');
    const second = (await getJob(deps, unpulled)).error?.message;
    expect(second).toMatch(
      /^AWS Batch stopped the trainer before the trainer started: CannotPullContainerError/,
    );
    expect(second).toContain("The trainer's log in CloudWatch (log stream trainer/default/");
  });

  it('leaves a job that has already ended as it is', async () => {
    const deps = createAwsDeps(config, { clients, log: silentLogger });
    // given a job the trainer failed itself (a data error; it then exited 2), and one that succeeded
    const dataError = await jobRecord(deps, {
      status: 'failed',
      attempts: 1,
      error: { code: 'INVALID_DATASET', message: 'Every row of ds-1 lacks a label.' },
    });
    const succeeded = await jobRecord(deps, {
      status: 'succeeded',
      attempts: 1,
      progress: 1,
      promoted: true,
    });
    // when Batch reports their jobs FAILED
    const exit2 = batchJobFailedEvent(dataError.id, { attempts: [{ exitCode: 2 }] });
    expect(await handleBatchEvent(deps, exit2)).toBe('ended');
    expect(await handleBatchEvent(deps, batchJobFailedEvent(succeeded.id))).toBe('ended');
    // then
    expect(await getJob(deps, dataError.id)).toEqual(dataError);
    expect(await getJob(deps, succeeded.id)).toEqual(succeeded);
  });

  it('leaves a job to another trainer whose heartbeat is live', async () => {
    // given a job a second Batch job's trainer (a duplicate launch) holds, on the same attempt number
    const { deps, lines } = logged();
    const jobId = newJobId();
    const duplicate = randomUUID();
    const held = await jobRecord(deps, running(jobId, duplicate, 1));
    // when the first Batch job, killed on its one attempt, reports FAILED
    expect(await handleBatchEvent(deps, batchJobFailedEvent(jobId))).toBe('held');
    // then the job is left to the live trainer
    expect(await getJob(deps, jobId)).toEqual(held);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 'warn', jobId, worker: trainerWorkerId(duplicate, 1) }),
    );
  });

  it('ignores an event for a job that does not exist, without creating it', async () => {
    const { deps, lines } = logged();
    const jobId = newJobId();
    expect(await handleBatchEvent(deps, batchJobFailedEvent(jobId))).toBe('unknown');
    expect(await deps.store.find(storageKeys.job(jobId))).toBeUndefined();
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', jobId, status: 'no such job' }));
  });

  it('logs and ignores a malformed event or one that names no Graft job, without throwing', async () => {
    const { deps, lines } = logged();
    const jobId = newJobId();
    const valid = batchJobFailedEvent(jobId);
    const noGraftJob = batchJobFailedEvent(jobId);
    noGraftJob.detail.jobName = 'someone-elses-job';
    noGraftJob.detail.parameters = { jobId: 'none' };
    noGraftJob.detail.container.environment = [];
    const malformed: unknown[] = [
      undefined,
      'not an event',
      {},
      { ...valid, 'detail-type': 'Batch Job Queue Blocked' },
      { ...valid, detail: { ...valid.detail, status: 'RUNNING' } },
      { ...valid, detail: { ...valid.detail, attempts: 'three' } },
      noGraftJob,
    ];
    for (const event of malformed) expect(await handleBatchEvent(deps, event)).toBe('ignored');
    expect(lines.filter((line) => line.level === 'warn')).toHaveLength(malformed.length);
    expect(lines).toContainEqual(
      expect.objectContaining({
        message: 'failed Batch job carries no Graft job id; ignored',
        batchJobName: 'someone-elses-job',
      }),
    );
  });

  it('finds the job id in the container environment or the job name when the parameter is missing', async () => {
    const deps = createAwsDeps(config, { clients, log: silentLogger });
    const byEnv = await jobRecord(deps);
    const byName = await jobRecord(deps);
    const envOnly = batchJobFailedEvent(byEnv.id);
    envOnly.detail.parameters = { jobId: 'none' };
    envOnly.detail.jobName = 'graft-renamed';
    const nameOnly = batchJobFailedEvent(byName.id);
    nameOnly.detail.parameters = { jobId: 'none' };
    nameOnly.detail.container.environment = [];
    expect(await handleBatchEvent(deps, envOnly)).toBe('failed');
    expect(await handleBatchEvent(deps, nameOnly)).toBe('failed');
  });

  it('throws while S3 cannot be reached, so that Lambda retries the event', async () => {
    // given S3 that does not answer
    const { endpoint, clients: unreachable } = await unreachableAws(aws.credentials);
    const deps = createAwsDeps({ ...config, endpoint }, { clients: unreachable, log: silentLogger });
    // when / then
    await expect(handleBatchEvent(deps, batchJobFailedEvent(newJobId()))).rejects.toMatchObject({
      code: 'STORAGE_UNAVAILABLE',
    });
    for (const client of Object.values(unreachable)) client.destroy();
  });
});
