import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { GraftError } from '../../errors.js';
import {
  type JobMessage,
  JobMessageSchema,
  type JobQueue,
  type ReceivedMessage,
  type ReceiveOptions,
} from '../../ports/job-queue.js';
import { describeAwsFailure } from './aws-errors.js';

/** SQS limits: at most 10 messages a receive, 20 s of long polling, 12 h of visibility. */
const MAX_BATCH = 10;
const MAX_WAIT_SECONDS = 20;
const MAX_VISIBILITY_SECONDS = 43_200;

/**
 * The job queue on Amazon SQS (standard queue). Redrive to the dead-letter queue is the queue's own
 * `RedrivePolicy` (set by the CDK stack), so `maxReceives` lives in infrastructure, not here.
 */
export class SqsJobQueue implements JobQueue {
  readonly queueUrl: string;
  readonly #client: SQSClient;

  constructor(client: SQSClient, queueUrl: string) {
    this.#client = client;
    this.queueUrl = queueUrl;
  }

  async send(message: JobMessage): Promise<{ messageId: string }> {
    const body = JSON.stringify(JobMessageSchema.parse(message));
    try {
      const out = await this.#client.send(
        new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: body }),
      );
      return { messageId: out.MessageId ?? '' };
    } catch (err) {
      throw this.#error(err, 'send to');
    }
  }

  async receive({
    maxMessages = 1,
    visibilityTimeoutMs,
    waitMs = 0,
  }: ReceiveOptions = {}): Promise<ReceivedMessage[]> {
    try {
      const out = await this.#client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: Math.min(MAX_BATCH, Math.max(1, Math.floor(maxMessages))),
          WaitTimeSeconds: Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.ceil(waitMs / 1000))),
          VisibilityTimeout:
            visibilityTimeoutMs === undefined ? undefined : toVisibilitySeconds(visibilityTimeoutMs),
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
      );
      return (out.Messages ?? []).map((m) => ({
        messageId: m.MessageId ?? '',
        receiptHandle: m.ReceiptHandle ?? '',
        body: m.Body ?? '',
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? '1'),
      }));
    } catch (err) {
      throw this.#error(err, 'receive from');
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    try {
      await this.#client.send(
        new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle }),
      );
    } catch (err) {
      throw this.#error(err, 'delete a message from');
    }
  }

  async extendVisibility(receiptHandle: string, visibilityTimeoutMs: number): Promise<void> {
    try {
      await this.#client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.queueUrl,
          ReceiptHandle: receiptHandle,
          VisibilityTimeout: toVisibilitySeconds(visibilityTimeoutMs),
        }),
      );
    } catch (err) {
      throw this.#error(err, 'change visibility on');
    }
  }

  #error(err: unknown, action: string): GraftError {
    const failure = describeAwsFailure(err);
    if (failure.transient) {
      return new GraftError(
        'QUEUE_UNAVAILABLE',
        `SQS could not ${action} ${this.queueUrl} right now (${failure.name}: ${failure.message}); try again shortly.`,
        { cause: err },
      );
    }
    if (failure.name === 'ReceiptHandleIsInvalid' || failure.name === 'MessageNotInflight') {
      return new GraftError(
        'CONFLICT',
        `The message's receipt handle is no longer valid (${failure.name}): its visibility timeout ran out and another consumer may hold it.`,
        { cause: err },
      );
    }
    return new GraftError(
      'INTERNAL',
      `SQS refused to ${action} ${this.queueUrl} (${failure.name}: ${failure.message}); check the queue URL and the role's permissions.`,
      { cause: err },
    );
  }
}

function toVisibilitySeconds(ms: number): number {
  return Math.min(MAX_VISIBILITY_SECONDS, Math.max(0, Math.ceil(ms / 1000)));
}
