// The dispatcher Lambda (SQS event source with reportBatchItemFailures): job messages -> AWS Batch, files dropped
// under tasks/{task}/incoming/ -> dataset versions and jobs.
import { createDispatcherHandler } from '../../src/adapters/aws/dispatcher-handler.js';
import { loadAwsConfig } from '../../src/config.js';

export const handler = createDispatcherHandler(loadAwsConfig());
