import type { AwsConfig } from '../../config.js';
import { type AwsClients, createAwsClients, createAwsDeps, createBatchLauncher } from './deps.js';
import { dispatchSqsBatch, type SqsBatchResponse, type SqsEvent } from './sqs-dispatcher.js';

/**
 * The dispatcher Lambda's handler: an SQS batch in, the records to retry out (`reportBatchItemFailures`). It never
 * loads ONNX Runtime, so its bundle ships without it.
 */
export function createDispatcherHandler(
  config: AwsConfig,
  { clients = createAwsClients(config) }: { clients?: AwsClients } = {},
): (event: SqsEvent) => Promise<SqsBatchResponse> {
  const deps = {
    ...createAwsDeps(config, { clients }),
    launcher: createBatchLauncher(config, clients),
    maxIncomingBytes: config.maxIncomingBytes,
  };
  return (event) => dispatchSqsBatch(deps, event);
}
