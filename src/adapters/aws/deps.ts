import { BatchClient } from '@aws-sdk/client-batch';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { type AwsConfig, ENV } from '../../config.js';
import type { CoreDeps } from '../../core/deps.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { GraftError } from '../../errors.js';
import { BatchJobLauncher } from './batch-launcher.js';
import { S3ObjectStore } from './s3-object-store.js';
import { SqsJobQueue } from './sqs-job-queue.js';

export interface AwsClients {
  s3: S3Client;
  /** Signs upload URLs: no flexible checksum is baked into them (see S3ObjectStoreOptions.presignClient). */
  s3Presign: S3Client;
  sqs: SQSClient;
  batch: BatchClient;
}

export interface AwsClientOptions {
  /** @default the SDK's own resolution (AWS_REGION in Lambda and Batch); 'us-east-1' with an endpoint override */
  region?: string;
  /** @default the SDK's default chain (the function's or container's role in AWS) */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Attempts per call, first included. @default the SDK's (3) */
  maxAttempts?: number;
  /** Longest wait for a connection, then for each answer (socket idle), per attempt. @default 3_000 / 10_000 */
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
}

/**
 * One client per service. With `endpoint` (GRAFT_AWS_ENDPOINT) every client talks to that URL, e.g. a
 * fauxqs server on 127.0.0.1, and S3 uses path-style addressing (`http://host/bucket/key`), which local
 * servers need because `bucket.127.0.0.1` does not resolve.
 *
 * Every call is bounded: the SDK's defaults wait for an answer without limit, so a stalled S3 connection would
 * hold an API request until the function timed out, with no error code. With timeouts (thrown, not only
 * warned about: `throwOnRequestTimeout`) a stalled attempt is retried, and the last one fails as
 * STORAGE_UNAVAILABLE / QUEUE_UNAVAILABLE (503). The request timeout is an idle timeout, so a large model upload
 * that keeps sending is not cut off.
 */
export function createAwsClients(
  config: Pick<AwsConfig, 'endpoint'>,
  {
    region = config.endpoint ? 'us-east-1' : undefined,
    credentials,
    maxAttempts,
    connectionTimeoutMs = 3_000,
    requestTimeoutMs = 10_000,
  }: AwsClientOptions = {},
): AwsClients {
  const common = {
    region,
    credentials,
    maxAttempts,
    endpoint: config.endpoint,
    requestHandler: {
      connectionTimeout: connectionTimeoutMs,
      requestTimeout: requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  };
  const s3 = { ...common, forcePathStyle: config.endpoint !== undefined };
  return {
    s3: new S3Client(s3),
    // Only signs: no checksum parameters in the URLs (a GET would otherwise carry x-amz-checksum-mode).
    s3Presign: new S3Client({
      ...s3,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
    sqs: new SQSClient(common),
    batch: new BatchClient(common),
  };
}

export interface AwsDeps extends CoreDeps {
  store: S3ObjectStore;
  queue: SqsJobQueue;
}

/** The core's dependencies in AWS: the S3 bucket, the SQS job queue and a JSON logger for CloudWatch. */
export function createAwsDeps(
  config: AwsConfig,
  {
    clients = createAwsClients(config),
    log = createLogger(config.logLevel),
  }: { clients?: AwsClients; log?: Logger } = {},
): AwsDeps {
  return {
    store: new S3ObjectStore(clients.s3, config.bucket, { presignClient: clients.s3Presign }),
    queue: new SqsJobQueue(clients.sqs, config.queueUrl),
    log,
    hub: { ...config.hub, cacheDir: config.hub?.cacheDir ?? '/tmp/graft-hub' },
  };
}

/** The Batch launcher of the dispatcher; throws INVALID_OPTIONS naming the missing variables when unset. */
export function createBatchLauncher(config: AwsConfig, clients: Pick<AwsClients, 'batch'>): BatchJobLauncher {
  if (!config.batchJobQueue || !config.batchJobDefinition) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `The dispatcher needs ${ENV.batchJobQueue} and ${ENV.batchJobDefinition}; the CDK stack sets both.`,
    );
  }
  return new BatchJobLauncher(clients.batch, {
    jobQueue: config.batchJobQueue,
    jobDefinition: config.batchJobDefinition,
  });
}
