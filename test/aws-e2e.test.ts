import { type ChildProcess, spawn } from 'node:child_process';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { LambdaEvent } from 'hono/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiHandler } from '../src/adapters/aws/api-handler.js';
import { type AwsClients, createAwsClients, createAwsDeps } from '../src/adapters/aws/deps.js';
import { createDispatcherHandler } from '../src/adapters/aws/dispatcher-handler.js';
import { S3ObjectStore } from '../src/adapters/aws/s3-object-store.js';
import { SqsJobQueue } from '../src/adapters/aws/sqs-job-queue.js';
import { type AwsConfig, ENV } from '../src/config.js';
import { sha256Hex } from '../src/core/auth.js';
import { getJob } from '../src/core/jobs.js';
import { storageKeys } from '../src/core/storage-keys.js';
import {
  functionUrlEvent,
  type HttpRequest,
  httpApiV2Event,
  lambdaContext,
  objectCreatedEvent,
  sqsEvent,
  sqsRecord,
} from './fixtures/aws/events.js';
import { type FakeBatch, type SubmittedJob, startFakeBatch } from './fixtures/aws/fake-batch.js';
import { type LocalAws, startLocalAws, testAwsConfig } from './fixtures/aws/local-aws.js';
import { makeTextDataset, toJsonl } from './support/fixtures.js';

const BUCKET = 'graft-e2e';
const ADMIN_KEY = 'graft-e2e-admin-key-0123456789abcdef';

let aws: LocalAws;
let batch: FakeBatch;
let clients: AwsClients;
let config: AwsConfig;
const trainers: { job: SubmittedJob; exit: Promise<{ code: number | null; output: string }> }[] = [];
const children: ChildProcess[] = [];

/** The id AWS Batch would give the trainer's Batch job (in AWS_BATCH_JOB_ID). */
const BATCH_JOB_ID = '5f2c9e7a-1b3d-4c8e-9a6f-0d2e4b7c1a93';

/**
 * What AWS Batch does with a submitted job here: start the trainer container's command (functions/aws/trainer.ts)
 * as a child process, with the job definition's environment plus the submission's overrides.
 */
function runTrainerContainer(job: SubmittedJob) {
  const overrides = Object.fromEntries(
    (job.containerOverrides?.environment ?? []).map((e) => [e.name, e.value]),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', 'functions/aws/trainer.ts'], {
    env: {
      PATH: process.env.PATH,
      ...aws.env,
      [ENV.bucket]: config.bucket,
      [ENV.queueUrl]: config.queueUrl,
      [ENV.awsEndpoint]: aws.endpoint,
      [ENV.logLevel]: 'info',
      GRAFT_TRAINER_MAX_ATTEMPTS: '3',
      AWS_BATCH_JOB_ATTEMPT: '1',
      [ENV.batchJobId]: BATCH_JOB_ID,
      ...overrides,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<{ code: number | null; output: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, output })),
  );
  trainers.push({ job, exit });
}

beforeAll(async () => {
  aws = await startLocalAws();
  batch = await startFakeBatch({ onSubmit: (job) => runTrainerContainer(job) });
  clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  // Batch goes to its own endpoint, as the dispatcher's client would go to batch.<region>.amazonaws.com.
  clients.batch = createAwsClients({ endpoint: batch.endpoint }, { credentials: aws.credentials }).batch;
  await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const dlq = await clients.sqs.send(new CreateQueueCommand({ QueueName: 'graft-e2e-dlq' }));
  const dlqArn = (
    await clients.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] }),
    )
  ).Attributes?.QueueArn;
  const queue = await clients.sqs.send(
    new CreateQueueCommand({
      QueueName: 'graft-e2e-jobs',
      Attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 3 }) },
    }),
  );
  config = testAwsConfig(aws, {
    bucket: BUCKET,
    queueUrl: queue.QueueUrl ?? '',
    batchJobQueue: 'arn:aws:batch:us-east-1:123456789012:job-queue/graft',
    batchJobDefinition: 'arn:aws:batch:us-east-1:123456789012:job-definition/graft-trainer:1',
    apiKeyHash: sha256Hex(ADMIN_KEY),
    modelRefreshSeconds: 0,
  });
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill();
  for (const client of Object.values(clients ?? {})) client.destroy();
  await batch?.stop();
  await aws?.stop();
});

describe('the whole AWS path on 127.0.0.1', () => {
  it('S3 drop -> dispatcher -> Batch trainer (child process) -> model in S3 -> Lambda API predicts', async () => {
    const api = createApiHandler(config, { clients });
    const dispatch = createDispatcherHandler(config, { clients });
    const call = async (event: (r: HttpRequest) => unknown, request: HttpRequest) => {
      const headers = {
        authorization: `Bearer ${ADMIN_KEY}`,
        'content-type': 'application/json',
        ...request.headers,
      };
      const response = await api(event({ ...request, headers }) as LambdaEvent, lambdaContext());
      return { status: response.statusCode, body: JSON.parse(response.body) };
    };

    // given: a task, created through the Function URL
    const created = await call(functionUrlEvent, {
      method: 'PUT',
      path: '/v1/tasks/topics',
      body: JSON.stringify({ autoTrain: true }),
    });
    expect(created.status, JSON.stringify(created.body)).toBeLessThan(300);

    // when: a labelled file lands under tasks/topics/incoming/ and S3 -> EventBridge -> SQS -> dispatcher runs
    const store = new S3ObjectStore(clients.s3, BUCKET);
    const key = `${storageKeys.incomingPrefix('topics')}first-batch.jsonl`;
    await store.put(key, toJsonl(makeTextDataset({ perLabel: 12 })));
    const ingest = await dispatch(sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, key))]));
    expect(ingest).toEqual({ batchItemFailures: [] });

    // and the job message the ingest queued is delivered to the dispatcher, which submits it to Batch
    const queue = new SqsJobQueue(clients.sqs, config.queueUrl);
    const [message] = await queue.receive({ waitMs: 2000 });
    expect(message).toBeDefined();
    const { jobId } = JSON.parse(message?.body ?? '{}') as { jobId: string };
    const launch = await dispatch(sqsEvent([sqsRecord(message?.body, { messageId: message?.messageId })]));
    expect(launch).toEqual({ batchItemFailures: [] });
    await queue.delete(message?.receiptHandle ?? '');

    // then: Batch got one job for it, and the trainer container ran it to the end
    expect(batch.submitted.map((job) => job.parameters?.jobId)).toEqual([jobId]);
    const trainer = trainers[0];
    const { code, output } = (await trainer?.exit) ?? { code: -1, output: 'no trainer started' };
    expect(code, `${config.queueUrl}\n${output}`).toBe(0);
    expect(await store.find(key)).toBeUndefined();
    expect(await store.list(storageKeys.modelsPrefix('topics'))).toEqual([
      storageKeys.modelCard('topics', 'v1'),
      storageKeys.modelFile('topics', 'v1'),
    ]);

    // and the API (HTTP API v2 event) reports the job and serves predictions from the new model
    const job = await call(httpApiV2Event, { method: 'GET', path: `/v1/jobs/${jobId}` });
    expect(job.body).toMatchObject({ id: jobId, status: 'succeeded', modelVersion: 'v1' });
    // the trainer signed its work with its Batch job's id and attempt (what a Batch FAILED event is matched by)
    const record = await getJob(createAwsDeps(config, { clients }), jobId);
    expect(record.events.map((e) => e.message)).toContain(`started on batch-${BATCH_JOB_ID}-1`);
    const predicted = await call(httpApiV2Event, {
      method: 'POST',
      path: '/v1/tasks/topics/predict',
      body: JSON.stringify({ inputs: ['goal for the home team', 'rain and wind tomorrow'] }),
    });
    expect(predicted.status, JSON.stringify(predicted.body)).toBe(200);
    expect(predicted.body.model).toEqual({ task: 'topics', version: 'v1' });
    expect(predicted.body.predictions.map((p: { label: string }) => p.label)).toEqual(['sports', 'weather']);
    const viaUrl = await call(functionUrlEvent, {
      method: 'POST',
      path: '/v1/tasks/topics/predict',
      body: JSON.stringify({ inputs: ['shares fell on the market'] }),
    });
    expect(viaUrl.body.predictions[0].label).toBe('finance');

    // and a redelivered job message is not launched again once the job has finished
    const again = await dispatch(sqsEvent([sqsRecord({ type: 'train', jobId })]));
    expect(again).toEqual({ batchItemFailures: [] });
    expect(batch.submitted).toHaveLength(1);
  }, 180_000);
});
