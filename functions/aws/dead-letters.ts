// The dead-letter Lambda (SQS event source on the job queue's dead-letter queue, reportBatchItemFailures): the job
// of a message that failed every delivery is marked failed, so that no job stays queued or running for ever.
import { createDeadLetterHandler } from '../../src/adapters/aws/dead-letter-handler.js';
import { loadAwsConfig } from '../../src/config.js';

export const handler = createDeadLetterHandler(loadAwsConfig());
