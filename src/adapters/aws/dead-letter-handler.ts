import type { AwsConfig } from '../../config.js';
import { MAX_DELIVERIES } from '../../core/delivery.js';
import type { CoreDeps } from '../../core/deps.js';
import { failDeadLetteredJob } from '../../core/jobs.js';
import { type AwsClients, createAwsDeps } from './deps.js';
import {
  classifyQueueBody,
  type SqsBatchResponse,
  type SqsEvent,
  type SqsRecord,
  settleSqsBatch,
} from './sqs-dispatcher.js';

export interface DeadLetterOptions {
  /** A running job whose heartbeat is older than this has lost its worker. @default runJob's (20 s) */
  staleAfterMs?: number;
}

/**
 * Handles one batch of the dead-letter queue (the messages the job queue gave up on after MAX_DELIVERIES
 * receives): the job a job message names is marked failed with DELIVERIES_EXHAUSTED, unless it has ended; an
 * incoming-file event is logged with its key (the file stays under `incoming/`). Consuming a record deletes it,
 * so each is logged whole first: the log is the evidence. A job a live worker still holds, and a record that
 * failed in a way worth retrying, are reported as batch item failures and come back after the queue's visibility
 * timeout.
 */
export function handleDeadLetters(
  deps: CoreDeps,
  event: SqsEvent,
  options: DeadLetterOptions = {},
): Promise<SqsBatchResponse> {
  return settleSqsBatch(deps.log, event, (record) => handleRecord(deps, record, options), {
    retried: 'dead letter not handled; it will be retried',
    dropped: 'dead letter dropped',
  });
}

/** Returns false when the record should come back later. */
async function handleRecord(deps: CoreDeps, record: SqsRecord, options: DeadLetterOptions): Promise<boolean> {
  const evidence = { messageId: record.messageId, body: record.body.slice(0, 4000) };
  const action = classifyQueueBody(record.body);
  switch (action.kind) {
    case 'launch': {
      const result = await failDeadLetteredJob(deps, action.jobId, {
        deliveries: MAX_DELIVERIES,
        staleAfterMs: options.staleAfterMs,
      });
      if (result.outcome === 'held') {
        deps.log.info('dead-lettered job is held by a live worker; looking again later', evidence);
        return false;
      }
      if (result.outcome === 'failed') {
        deps.log.error('job failed: its message was dead-lettered', {
          ...evidence,
          jobId: action.jobId,
          reason: result.job.error?.message,
        });
      } else {
        deps.log.warn('dead-lettered job message; nothing to fail', {
          ...evidence,
          jobId: action.jobId,
          status: result.outcome === 'unknown' ? 'no such job' : result.job.status,
        });
      }
      return true;
    }
    case 'ingest':
      // The file stays where it is: copying it onto itself raises a new event (README "When the dead-letter
      // alarm fires").
      deps.log.error(`incoming file not ingested in ${MAX_DELIVERIES} deliveries; it stays in the bucket`, {
        ...evidence,
        key: action.key,
      });
      return true;
    case 'ignore':
      deps.log.warn('dead letter is neither a job message nor an incoming file', {
        ...evidence,
        reason: action.reason,
      });
      return true;
  }
}

/** The dead-letter Lambda's handler: an SQS batch of the dead-letter queue in, the records to retry out. */
export function createDeadLetterHandler(
  config: AwsConfig,
  options: { clients?: AwsClients } = {},
): (event: SqsEvent) => Promise<SqsBatchResponse> {
  const deps = createAwsDeps(config, options);
  return (event) => handleDeadLetters(deps, event);
}
