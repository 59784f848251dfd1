import { z } from 'zod';
import { ingestIncoming, parseIncomingKey } from '../../core/datasets.js';
import type { CoreDeps } from '../../core/deps.js';
import { findJob, isTerminal } from '../../core/jobs.js';
import type { Logger } from '../../core/logger.js';
import { GraftError, toGraftError } from '../../errors.js';
import type { JobLauncher } from '../../ports/job-launcher.js';
import { JobMessageSchema } from '../../ports/job-queue.js';

/** The parts of Lambda's SQS event the dispatcher reads (aws-lambda's `SQSEvent`, without the dependency). */
export interface SqsEvent {
  Records: SqsRecord[];
}
export interface SqsRecord {
  messageId: string;
  body: string;
  attributes?: { ApproximateReceiveCount?: string; [name: string]: string | undefined };
}
/** Lambda's partial batch response: the listed messages return to the queue, the others are deleted. */
export interface SqsBatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

/**
 * The queue carries two kinds of body: a `JobMessage` from the API, and the EventBridge "Object Created" event
 * that S3 emits when a file lands under `tasks/{task}/incoming/` (the stack routes only those keys here).
 */
export type QueueAction =
  | { kind: 'launch'; jobId: string }
  | { kind: 'ingest'; bucket: string; key: string; size?: number }
  | { kind: 'ignore'; reason: string };

const ObjectCreatedEventSchema = z.object({
  source: z.literal('aws.s3'),
  'detail-type': z.literal('Object Created'),
  detail: z.object({
    bucket: z.object({ name: z.string() }),
    object: z.object({ key: z.string(), size: z.number().int().nonnegative().optional() }),
  }),
});

/** Decides what one queue body asks for. Bodies that are neither kind are ignored (and logged by the caller). */
export function classifyQueueBody(body: string, { prefix = '' }: { prefix?: string } = {}): QueueAction {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { kind: 'ignore', reason: 'the body is not JSON' };
  }
  const job = JobMessageSchema.safeParse(json);
  if (job.success) return { kind: 'launch', jobId: job.data.jobId };
  const event = ObjectCreatedEventSchema.safeParse(json);
  if (event.success) {
    // EventBridge gives the key as stored (S3 notifications would URL-encode it).
    const fullKey = event.data.detail.object.key;
    if (!fullKey.startsWith(prefix)) return { kind: 'ignore', reason: `key ${fullKey} is outside ${prefix}` };
    const key = fullKey.slice(prefix.length);
    if (!parseIncomingKey(key)) {
      return { kind: 'ignore', reason: `key ${key} is not of the form tasks/{task}/incoming/{file}` };
    }
    const { size } = event.data.detail.object;
    return {
      kind: 'ingest',
      bucket: event.data.detail.bucket.name,
      key,
      ...(size === undefined ? {} : { size }),
    };
  }
  return { kind: 'ignore', reason: 'the body is neither a job message nor an S3 Object Created event' };
}

// Failures worth another delivery: the next one may find S3, SQS or Batch answering again.
const RETRYABLE = new Set(['STORAGE_UNAVAILABLE', 'QUEUE_UNAVAILABLE', 'INTERNAL']);

/** Whether a record that failed this way should be delivered again (a batch item failure) rather than dropped. */
export function isRetryable(error: GraftError): boolean {
  return RETRYABLE.has(error.code);
}

export interface DispatcherDeps extends CoreDeps {
  launcher: JobLauncher;
  /** Files under `incoming/` larger than this are rejected unread (see AwsConfig.maxIncomingBytes). */
  maxIncomingBytes?: number;
}

/**
 * Handles one SQS batch for the dispatcher Lambda: launches training for job messages, ingests files dropped
 * under `incoming/` (which queues their job), and reports only the records worth retrying as batch item
 * failures. A record that can never succeed (a malformed file, an unknown task) is logged and dropped rather
 * than sent three times to the dead-letter queue. What does reach that queue is handled by `handleDeadLetters`.
 */
export function dispatchSqsBatch(deps: DispatcherDeps, event: SqsEvent): Promise<SqsBatchResponse> {
  return settleSqsBatch(
    deps.log,
    event,
    async (record) => {
      await dispatchRecord(deps, record);
      return true;
    },
    { retried: 'record failed; it will be retried', dropped: 'record dropped' },
  );
}

/**
 * Lambda's partial batch response for an SQS batch whose records are handled at once: a record comes back later
 * (a batch item failure) when `handle` returns false (not settled yet) or fails in a way worth retrying
 * (`isRetryable`); any other failure is logged with `messages.dropped` and the record is deleted.
 */
export async function settleSqsBatch(
  log: Logger,
  event: SqsEvent,
  handle: (record: SqsRecord) => Promise<boolean>,
  messages: { retried: string; dropped: string },
): Promise<SqsBatchResponse> {
  const results = await Promise.all(
    event.Records.map(async (record) => {
      try {
        return (await handle(record)) ? undefined : { itemIdentifier: record.messageId };
      } catch (err) {
        const error = toGraftError(err);
        const retry = isRetryable(error);
        log[retry ? 'warn' : 'error'](retry ? messages.retried : messages.dropped, {
          messageId: record.messageId,
          receiveCount: record.attributes?.ApproximateReceiveCount,
          code: error.code,
          message: error.message,
        });
        return retry ? { itemIdentifier: record.messageId } : undefined;
      }
    }),
  );
  return { batchItemFailures: results.filter((failure) => failure !== undefined) };
}

async function dispatchRecord(deps: DispatcherDeps, record: SqsRecord): Promise<void> {
  const action = classifyQueueBody(record.body);
  switch (action.kind) {
    case 'ignore':
      deps.log.warn('ignoring a queue message', { messageId: record.messageId, reason: action.reason });
      return;
    case 'launch': {
      const found = await findJob(deps, action.jobId);
      if (!found)
        throw new GraftError('JOB_NOT_FOUND', `Job ${action.jobId} does not exist; nothing to launch.`);
      if (isTerminal(found.value)) {
        deps.log.info('job already finished; not launching it again', {
          jobId: action.jobId,
          status: found.value.status,
        });
        return;
      }
      await deps.launcher.launch(action.jobId);
      deps.log.info('training launched', { jobId: action.jobId });
      return;
    }
    case 'ingest':
      try {
        const result = await ingestIncoming(deps, action.key, {
          size: action.size,
          maxBytes: deps.maxIncomingBytes,
        });
        deps.log.info('incoming file ingested', {
          key: action.key,
          dataset: result.dataset.id,
          existing: result.existing,
          jobId: result.job?.id,
        });
      } catch (err) {
        // Ingesting deletes the file: a redelivery after success finds nothing, which is success.
        if (err instanceof GraftError && err.code === 'OBJECT_NOT_FOUND') {
          deps.log.info('incoming file already ingested', { key: action.key });
          return;
        }
        throw err;
      }
      return;
  }
}
