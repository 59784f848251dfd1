import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AwsClients, createAwsClients, createAwsDeps } from '../src/adapters/aws/deps.js';
import {
  classifyQueueBody,
  type DispatcherDeps,
  dispatchSqsBatch,
} from '../src/adapters/aws/sqs-dispatcher.js';
import type { AwsConfig } from '../src/config.js';
import { listRejectedUploads } from '../src/core/datasets.js';
import { findJob, updateJob } from '../src/core/jobs.js';
import { silentLogger } from '../src/core/logger.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { putTask } from '../src/core/tasks.js';
import { GraftError } from '../src/errors.js';
import { objectCreatedEvent, sqsEvent, sqsRecord } from './fixtures/aws/events.js';
import { type LocalAws, startLocalAws, testAwsConfig } from './fixtures/aws/local-aws.js';

let aws: LocalAws;
let clients: AwsClients;
let config: AwsConfig;

const BUCKET = 'graft-dispatch';

/** Records launches; can be told to fail the next ones like an unavailable Batch would. */
function recordingLauncher() {
  const launched: string[] = [];
  let failures = 0;
  return {
    launched,
    failNext(n: number) {
      failures = n;
    },
    async launch(jobId: string) {
      if (failures > 0) {
        failures -= 1;
        throw new GraftError('QUEUE_UNAVAILABLE', 'Batch is throttling');
      }
      launched.push(jobId);
    },
  };
}

function jsonl(rows: { text: string; label: string }[]) {
  return `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
}

const ROWS = ['refund', 'shipping'].flatMap((label) =>
  Array.from({ length: 8 }, (_, i) => ({ text: `${label} question number ${i}`, label })),
);

beforeAll(async () => {
  aws = await startLocalAws();
  clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const queue = await clients.sqs.send(new CreateQueueCommand({ QueueName: 'graft-dispatch-jobs' }));
  config = testAwsConfig(aws, { bucket: BUCKET, queueUrl: queue.QueueUrl ?? '' });
});

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await aws?.stop();
});

function deps(): DispatcherDeps & { launcher: ReturnType<typeof recordingLauncher> } {
  return { ...createAwsDeps(config, { clients, log: silentLogger }), launcher: recordingLauncher() };
}

describe('classifyQueueBody', () => {
  it('tells job messages, incoming files and everything else apart', () => {
    expect(classifyQueueBody('{"type":"train","jobId":"job-1"}')).toEqual({ kind: 'launch', jobId: 'job-1' });
    expect(
      classifyQueueBody(JSON.stringify(objectCreatedEvent('b', 'tasks/support/incoming/new rows.jsonl'))),
    ).toEqual({ kind: 'ingest', bucket: 'b', key: 'tasks/support/incoming/new rows.jsonl', size: 100 });
    expect(
      classifyQueueBody(JSON.stringify(objectCreatedEvent('b', 'tasks/support/models/v1/card.json'))),
    ).toMatchObject({ kind: 'ignore' });
    expect(
      classifyQueueBody(JSON.stringify(objectCreatedEvent('b', 'tasks/Bad_Name/incoming/x.csv'))),
    ).toMatchObject({
      kind: 'ignore',
    });
    expect(
      classifyQueueBody(JSON.stringify(objectCreatedEvent('b', 'graft/tasks/a/incoming/x.csv')), {
        prefix: 'graft/',
      }),
    ).toEqual({ kind: 'ingest', bucket: 'b', key: 'tasks/a/incoming/x.csv', size: 100 });
    expect(classifyQueueBody('not json')).toMatchObject({ kind: 'ignore' });
    expect(classifyQueueBody('{"Service":"Amazon S3","Event":"s3:TestEvent"}')).toMatchObject({
      kind: 'ignore',
    });
  });
});

describe('dispatchSqsBatch against S3 and SQS on 127.0.0.1', () => {
  it('ingests a dropped file: dataset stored, job queued, file removed; a redelivery is a no-op', async () => {
    // given
    const d = deps();
    await putTask(d, 'support', { autoTrain: true });
    const key = `${storageKeys.incomingPrefix('support')}batch-1.jsonl`;
    await d.store.put(key, jsonl(ROWS));
    const record = sqsRecord(objectCreatedEvent(BUCKET, key));
    // when
    const first = await dispatchSqsBatch(d, sqsEvent([record]));
    const again = await dispatchSqsBatch(
      d,
      sqsEvent([{ ...record, attributes: { ApproximateReceiveCount: '2' } }]),
    );
    // then
    expect(first).toEqual({ batchItemFailures: [] });
    expect(again).toEqual({ batchItemFailures: [] });
    expect(await d.store.find(key)).toBeUndefined();
    const datasets = (await d.store.list(storageKeys.datasetsPrefix('support'))).filter((k) =>
      k.endsWith('manifest.json'),
    );
    expect(datasets).toHaveLength(1);
    const queued = await d.queue.receive({ maxMessages: 10 });
    expect(queued).toHaveLength(1);
    const { jobId } = JSON.parse(queued[0]?.body ?? '{}') as { jobId: string };
    expect((await findJob(d, jobId))?.value.status).toBe('queued');
    await d.queue.delete(queued[0]?.receiptHandle ?? '');
  });

  it('rejects a file larger than it can parse without reading it, and keeps the file', async () => {
    // given a dispatcher that ingests files of at most 1,000 bytes, and a 5 GB file (by its event)
    const d = { ...deps(), maxIncomingBytes: 1000 };
    await putTask(d, 'huge', { autoTrain: true });
    const key = `${storageKeys.incomingPrefix('huge')}everything.jsonl`;
    await d.store.put(key, jsonl(ROWS));
    const record = sqsRecord(objectCreatedEvent(BUCKET, key, 5 * 1024 ** 3));
    // when
    const response = await dispatchSqsBatch(d, sqsEvent([record]));
    // then: not retried, no dataset, the reason recorded for GET /v1/tasks/huge/datasets, the file kept
    expect(response).toEqual({ batchItemFailures: [] });
    expect(await d.store.list(storageKeys.datasetsPrefix('huge'))).toEqual([]);
    const [rejected] = await listRejectedUploads(d, 'huge');
    expect(rejected).toMatchObject({ file: 'everything.jsonl', error: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(rejected?.error.message).toMatch(/5368709120 bytes; files of at most 1000 bytes .* Split it/);
    expect(await d.store.find(key)).toBeDefined();
    expect(await d.queue.receive({ maxMessages: 10 })).toEqual([]);
  });

  it('launches a queued job, skips a finished one, and reports only retryable failures', async () => {
    // given
    const d = deps();
    await putTask(d, 'billing', { autoTrain: true });
    const ingestKey = `${storageKeys.incomingPrefix('billing')}rows.jsonl`;
    await d.store.put(ingestKey, jsonl(ROWS));
    await dispatchSqsBatch(d, sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, ingestKey))]));
    const [message] = await d.queue.receive({ maxMessages: 10 });
    const { jobId } = JSON.parse(message?.body ?? '{}') as { jobId: string };
    await d.queue.delete(message?.receiptHandle ?? '');

    await putTask(d, 'done-task', { autoTrain: true });
    const doneKey = `${storageKeys.incomingPrefix('done-task')}rows.jsonl`;
    await d.store.put(doneKey, jsonl(ROWS));
    await dispatchSqsBatch(d, sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, doneKey))]));
    const [doneMessage] = await d.queue.receive({ maxMessages: 10 });
    const doneId = (JSON.parse(doneMessage?.body ?? '{}') as { jobId: string }).jobId;
    await updateJob(d, doneId, (job) => ({ ...job, status: 'succeeded' }));

    const launch = sqsRecord({ type: 'train', jobId });
    const finished = sqsRecord({ type: 'train', jobId: doneId });
    const unknownJob = sqsRecord({ type: 'train', jobId: 'job-nope-00000000' });
    const badFile = sqsRecord(objectCreatedEvent(BUCKET, 'tasks/billing/incoming/notes.txt'));
    const junk = sqsRecord('hello');
    await d.store.put('tasks/billing/incoming/notes.txt', 'not a dataset');
    // when
    const ok = await dispatchSqsBatch(d, sqsEvent([launch, finished, unknownJob, badFile, junk]));
    d.launcher.failNext(1);
    const throttled = await dispatchSqsBatch(d, sqsEvent([launch]));
    // then
    expect(ok).toEqual({ batchItemFailures: [] });
    expect(d.launcher.launched).toEqual([jobId]);
    expect(throttled).toEqual({ batchItemFailures: [{ itemIdentifier: launch.messageId }] });
  });
});
