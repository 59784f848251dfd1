// What the job queue, its consumers and the CDK stack agree on. No imports: the CDK app loads this.

/**
 * Deliveries of one queue message before the queue gives up on it and dead-letters it: the SQS redrive policy's
 * `maxReceiveCount` (cdk/), the local queue's `maxReceives`, and the delivery the worker treats as the last.
 */
export const MAX_DELIVERIES = 3;
