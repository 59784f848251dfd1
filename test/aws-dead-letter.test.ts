import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeadLetterHandler, handleDeadLetters } from '../src/adapters/aws/dead-letter-handler.js';
import { type AwsClients, createAwsClients, createAwsDeps } from '../src/adapters/aws/deps.js';
import {
  dispatchSqsBatch,
  type SqsBatchResponse,
  type SqsEvent,
  type SqsRecord,
} from '../src/adapters/aws/sqs-dispatcher.js';
import type { AwsConfig } from '../src/config.js';
import { MAX_DELIVERIES } from '../src/core/delivery.js';
import { getJob, type Job, updateJob } from '../src/core/jobs.js';
import { createLogger, silentLogger } from '../src/core/logger.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { putTask } from '../src/core/tasks.js';
import { GraftError } from '../src/errors.js';
import { objectCreatedEvent, sqsRecord } from './fixtures/aws/events.js';
import { type LocalAws, startLocalAws, testAwsConfig, unreachableAws } from './fixtures/aws/local-aws.js';

const BUCKET = 'graft-dead-letters';

let aws: LocalAws;
let clients: AwsClients;
let config: AwsConfig;
let deadLetterUrl: string;

const ROWS = ['refund', 'shipping'].flatMap((label) =>
  Array.from({ length: 8 }, (_, i) => JSON.stringify({ text: `${label} question number ${i}`, label })),
);

beforeAll(async () => {
  aws = await startLocalAws();
  clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  // the stack's queues: the job queue redrives to the dead-letter queue after MAX_DELIVERIES receives
  deadLetterUrl =
    (await clients.sqs.send(new CreateQueueCommand({ QueueName: 'graft-jobs-dlq' }))).QueueUrl ?? '';
  const dlqArn = (
    await clients.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: deadLetterUrl, AttributeNames: ['QueueArn'] }),
    )
  ).Attributes?.QueueArn;
  const queue = await clients.sqs.send(
    new CreateQueueCommand({
      QueueName: 'graft-jobs',
      Attributes: {
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: MAX_DELIVERIES }),
      },
    }),
  );
  config = testAwsConfig(aws, { bucket: BUCKET, queueUrl: queue.QueueUrl ?? '' });
});

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await aws?.stop();
});

/**
 * What Lambda's SQS event source does: receive a batch, invoke the handler with it, and delete the records the
 * handler did not report as failures. A 0 s visibility timeout makes a failed record visible again at once.
 */
async function poll(queueUrl: string, handler: (event: SqsEvent) => Promise<SqsBatchResponse>) {
  const out = await clients.sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 10,
      VisibilityTimeout: 0,
      MessageSystemAttributeNames: ['ApproximateReceiveCount'],
    }),
  );
  const messages = out.Messages ?? [];
  const records: SqsRecord[] = messages.map((m) => ({
    ...sqsRecord(m.Body ?? ''),
    messageId: m.MessageId ?? '',
    receiptHandle: m.ReceiptHandle ?? '',
    attributes: { ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1' },
  }));
  const response = await handler({ Records: records });
  const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
  for (const m of messages) {
    if (failed.has(m.MessageId ?? '')) continue;
    await clients.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
  return { records, response };
}

/** A dispatcher whose Batch launches all fail, as a throttled or misconfigured Batch would. */
function failingDispatcher() {
  const deps = {
    ...createAwsDeps(config, { clients, log: silentLogger }),
    launcher: {
      async launch(): Promise<void> {
        throw new GraftError('QUEUE_UNAVAILABLE', 'AWS Batch could not start the job (throttled).');
      },
    },
  };
  return (event: SqsEvent) => dispatchSqsBatch(deps, event);
}

/** Uploads a file under incoming/ and lets the dispatcher ingest it: a dataset version and a queued job. */
async function queuedJob(task: string) {
  const deps = createAwsDeps(config, { clients, log: silentLogger });
  await putTask(deps, task, { autoTrain: true, strategy: 'logistic' });
  const key = `${storageKeys.incomingPrefix(task)}rows.jsonl`;
  await deps.store.put(key, `${ROWS.join('\n')}\n`);
  const ingest = sqsRecord(objectCreatedEvent(BUCKET, key));
  expect(await failingDispatcher()({ Records: [ingest] })).toEqual({ batchItemFailures: [] });
  const jobs = await deps.store.list(storageKeys.jobsPrefix());
  const job = (
    await Promise.all(jobs.map((k) => getJob(deps, k.slice('jobs/'.length, -'.json'.length))))
  ).find((j) => j.task === task);
  if (!job) throw new Error(`no job for ${task}`);
  return { deps, job };
}

describe('the dead-letter handler against S3 and SQS on 127.0.0.1', () => {
  it('fails the job of a message the dispatcher could not launch on any delivery, once', async () => {
    // given a queued job whose message the dispatcher fails to launch on every delivery
    const { deps, job } = await queuedJob('unlaunched');
    const dispatcher = failingDispatcher();
    const deliveries: number[] = [];
    for (let i = 0; i < MAX_DELIVERIES; i++) {
      const { records, response } = await poll(config.queueUrl, dispatcher);
      expect(records.map((r) => JSON.parse(r.body))).toEqual([{ type: 'train', jobId: job.id }]);
      expect(response.batchItemFailures).toHaveLength(1);
      deliveries.push(Number(records[0]?.attributes?.ApproximateReceiveCount));
    }
    expect(deliveries).toEqual([1, 2, 3]);
    // SQS moves it to the dead-letter queue instead of a fourth delivery
    expect((await poll(config.queueUrl, dispatcher)).records).toEqual([]);

    // when the dead-letter handler (as the Lambda runtime builds it) consumes the dead-letter queue
    const handler = createDeadLetterHandler({ ...config, logLevel: 'silent' }, { clients });
    const { records, response } = await poll(deadLetterUrl, handler);

    // then the job failed, saying what happened and how to retry; the message is consumed
    expect(records.map((r) => JSON.parse(r.body))).toEqual([{ type: 'train', jobId: job.id }]);
    expect(response).toEqual({ batchItemFailures: [] });
    const failed = await getJob(deps, job.id);
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    expect(failed.error?.message).toMatch(/^The job was delivered 3 times and never started/);
    expect(failed.error?.message).toContain('retry with POST /v1/tasks/unlaunched/jobs');
    expect((await poll(deadLetterUrl, handler)).records).toEqual([]);
    // the dataset is kept
    expect(await deps.store.list(storageKeys.datasetsPrefix('unlaunched'))).not.toEqual([]);

    // when the same dead letter is delivered again (at-least-once), the job is left as it is
    expect(await handler({ Records: records })).toEqual({ batchItemFailures: [] });
    expect(await getJob(deps, job.id)).toEqual(failed);
  });

  it('leaves a job a live worker holds for a later look, and fails it once the worker is gone', async () => {
    // given a running job with a fresh heartbeat, and its message in the dead-letter queue
    const { deps, job } = await queuedJob('held');
    await updateJob(
      deps,
      job.id,
      (j): Job => ({
        ...j,
        status: 'running',
        stage: 'training',
        attempts: 1,
        worker: { id: 'batch-alive', heartbeatAt: new Date().toISOString() },
      }),
    );
    await clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: deadLetterUrl,
        MessageBody: JSON.stringify({ type: 'train', jobId: job.id }),
      }),
    );
    const handle = (staleAfterMs: number) => (event: SqsEvent) =>
      handleDeadLetters(deps, event, { staleAfterMs });

    // when the handler looks while the worker's heartbeat is fresh
    const first = await poll(deadLetterUrl, handle(60_000));

    // then the record comes back later, and the job is untouched
    expect(first.response.batchItemFailures).toEqual([{ itemIdentifier: first.records[0]?.messageId }]);
    expect(await getJob(deps, job.id)).toMatchObject({ status: 'running', worker: { id: 'batch-alive' } });

    // when it looks again after the heartbeat went stale
    const second = await poll(deadLetterUrl, handle(0));

    // then
    expect(second.records[0]?.attributes?.ApproximateReceiveCount).toBe('2');
    expect(second.response).toEqual({ batchItemFailures: [] });
    const failed = await getJob(deps, job.id);
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    expect(failed.worker).toBeUndefined();
    expect(failed.error?.message).toContain('on all 3 deliveries (last stage: training)');
    expect((await poll(deadLetterUrl, handle(0))).records).toEqual([]);
  });

  it('logs the key of an incoming file that could not be ingested, and leaves the file', async () => {
    // given a dead-lettered S3 event for a file still under incoming/, and a logger that keeps its lines
    const lines: Record<string, unknown>[] = [];
    const deps = createAwsDeps(config, {
      clients,
      log: createLogger('info', (line) => lines.push(JSON.parse(line))),
    });
    const key = `${storageKeys.incomingPrefix('stuck')}big.jsonl`;
    await deps.store.put(key, `${ROWS.join('\n')}\n`);
    await clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: deadLetterUrl,
        MessageBody: JSON.stringify(objectCreatedEvent(BUCKET, key)),
      }),
    );
    // when
    const { response } = await poll(deadLetterUrl, (event) => handleDeadLetters(deps, event));
    // then
    expect(response).toEqual({ batchItemFailures: [] });
    expect(await deps.store.find(key)).toBeDefined();
    expect(lines).toContainEqual(expect.objectContaining({ level: 'error', key }));
  });

  it('retries a record while S3 cannot be reached', async () => {
    // given S3 that does not answer
    const { endpoint, clients: unreachable } = await unreachableAws(aws.credentials);
    const deps = createAwsDeps({ ...config, endpoint }, { clients: unreachable, log: silentLogger });
    const record = sqsRecord({ type: 'train', jobId: 'job-anything-00000000' });
    // when
    const response = await handleDeadLetters(deps, { Records: [record] });
    // then
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: record.messageId }] });
    for (const client of Object.values(unreachable)) client.destroy();
  });
});
