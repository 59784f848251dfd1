// The Batch events Lambda (EventBridge rule: "Batch Job State Change" with status FAILED on the stack's job
// queue): the job of a trainer that AWS Batch stopped for good is marked failed, so it does not stay running.
import { createBatchEventsHandler } from '../../src/adapters/aws/batch-events-handler.js';
import { loadAwsConfig } from '../../src/config.js';

export const handler = createBatchEventsHandler(loadAwsConfig());
