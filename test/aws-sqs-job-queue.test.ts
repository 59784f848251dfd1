import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsClients } from '../src/adapters/aws/deps.js';
import { SqsJobQueue } from '../src/adapters/aws/sqs-job-queue.js';
import { GraftError } from '../src/errors.js';
import { type LocalAws, startLocalAws, unreachableAws } from './fixtures/aws/local-aws.js';

let aws: LocalAws;
let sqs: SQSClient;
let queueCount = 0;

/** A fresh queue (and its dead-letter queue after `maxReceiveCount` receives) per test. */
async function freshQueue({ maxReceiveCount = 3 }: { maxReceiveCount?: number } = {}) {
  queueCount += 1;
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `graft-jobs-${queueCount}-dlq` }));
  const dlqArn = await queueArn(dlq.QueueUrl ?? '');
  const main = await sqs.send(
    new CreateQueueCommand({
      QueueName: `graft-jobs-${queueCount}`,
      Attributes: {
        VisibilityTimeout: '30',
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount }),
      },
    }),
  );
  return {
    queue: new SqsJobQueue(sqs, main.QueueUrl ?? ''),
    dlq: new SqsJobQueue(sqs, dlq.QueueUrl ?? ''),
  };
}

async function queueArn(url: string) {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return out.Attributes?.QueueArn ?? '';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  aws = await startLocalAws();
  sqs = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials }).sqs;
});

afterAll(async () => {
  sqs?.destroy();
  await aws?.stop();
});

describe('SqsJobQueue against a real SQS protocol server', () => {
  it('sends a job message, receives it with its receive count, and deletes it', async () => {
    // given
    const { queue } = await freshQueue();
    const { messageId } = await queue.send({ type: 'train', jobId: 'job-1' });
    // when
    const [received, ...rest] = await queue.receive({ maxMessages: 10 });
    // then
    expect(rest).toEqual([]);
    expect(received).toMatchObject({ messageId, receiveCount: 1 });
    expect(JSON.parse(received?.body ?? '')).toEqual({ type: 'train', jobId: 'job-1' });
    await queue.delete(received?.receiptHandle ?? '');
    expect(await queue.receive({ visibilityTimeoutMs: 0 })).toEqual([]);
  });

  it('hides a received message for its visibility timeout, then delivers it again', async () => {
    // given
    const { queue } = await freshQueue();
    await queue.send({ type: 'train', jobId: 'job-2' });
    const [first] = await queue.receive({ visibilityTimeoutMs: 1000 });
    // when
    const during = await queue.receive();
    await sleep(1300);
    const [again] = await queue.receive({ visibilityTimeoutMs: 1000 });
    // then
    expect(first?.receiveCount).toBe(1);
    expect(during).toEqual([]);
    expect(again).toMatchObject({ messageId: first?.messageId, receiveCount: 2 });
    expect(again?.receiptHandle).not.toBe(first?.receiptHandle);
  });

  it('extends the visibility of a message it still works on, or releases it at once', async () => {
    // given
    const { queue } = await freshQueue();
    await queue.send({ type: 'train', jobId: 'job-3' });
    const [held] = await queue.receive({ visibilityTimeoutMs: 1000 });
    // when: the worker needs longer than the first timeout
    await queue.extendVisibility(held?.receiptHandle ?? '', 5000);
    await sleep(1300);
    const stillHidden = await queue.receive();
    await queue.extendVisibility(held?.receiptHandle ?? '', 0);
    const [released] = await queue.receive();
    // then
    expect(stillHidden).toEqual([]);
    expect(released).toMatchObject({ messageId: held?.messageId, receiveCount: 2 });
  });

  it('moves a message to the dead-letter queue after 3 receives without a delete', async () => {
    // given
    const { queue, dlq } = await freshQueue({ maxReceiveCount: 3 });
    await queue.send({ type: 'train', jobId: 'job-poison' });
    // when: three consumers fail in turn (a 0 s visibility timeout makes it visible again at once)
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [message] = await queue.receive({ visibilityTimeoutMs: 0 });
      counts.push(message?.receiveCount ?? -1);
    }
    const fourth = await queue.receive({ visibilityTimeoutMs: 0 });
    const dead = await dlq.receive({ maxMessages: 10 });
    // then
    expect(counts).toEqual([1, 2, 3]);
    expect(fourth).toEqual([]);
    expect(dead).toHaveLength(1);
    expect(JSON.parse(dead[0]?.body ?? '')).toEqual({ type: 'train', jobId: 'job-poison' });
  });

  it('long-polls: a receive waits for a message sent during the wait', async () => {
    // given
    const { queue } = await freshQueue();
    const started = Date.now();
    // when
    const receiving = queue.receive({ waitMs: 5000 });
    await sleep(300);
    await queue.send({ type: 'train', jobId: 'job-late' });
    const messages = await receiving;
    // then
    expect(messages).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(4500);
  });

  it('receives S3 event notifications that share the queue as raw bodies', async () => {
    // given: S3 writes its own JSON to the queue, not a JobMessage
    const { queue } = await freshQueue();
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.queueUrl,
        MessageBody: '{"Records":[{"eventSource":"aws:s3"}]}',
      }),
    );
    // when
    const [message] = await queue.receive();
    // then
    expect(message?.body).toBe('{"Records":[{"eventSource":"aws:s3"}]}');
  });

  it('refuses to send something that is not a job message', async () => {
    const { queue } = await freshQueue();
    await expect(queue.send({ type: 'nope', jobId: 'x' } as never)).rejects.toThrow();
  });

  it('says QUEUE_UNAVAILABLE when SQS cannot be reached, INTERNAL when the queue does not exist', async () => {
    // given
    const { endpoint, clients: unreachable } = await unreachableAws(aws.credentials);
    const down = new SqsJobQueue(unreachable.sqs, `${endpoint}/000000000000/nowhere`);
    const missing = new SqsJobQueue(sqs, `${aws.endpoint}/000000000000/no-such-queue`);
    // when
    const downError = await down.send({ type: 'train', jobId: 'job-1' }).catch((e: unknown) => e);
    const missingError = await missing.send({ type: 'train', jobId: 'job-1' }).catch((e: unknown) => e);
    // then
    expect(downError).toBeInstanceOf(GraftError);
    expect((downError as GraftError).code).toBe('QUEUE_UNAVAILABLE');
    expect((missingError as GraftError).code).toBe('INTERNAL');
    expect((missingError as GraftError).message).toContain('no-such-queue');
    unreachable.sqs.destroy();
  });
});
