import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../../src/config.js';
import type { ArtifactStore } from './artifact-store.js';
import { awsConfigEnvironment, GraftFunction } from './graft-function.js';

export interface InferenceApiProps {
  readonly store: ArtifactStore;
  /** Where new fine-tune jobs are sent. */
  readonly queue: sqs.IQueue;
  /** CPU architecture of the function (ARM64 costs about 20% less per GB-second). @default lambda.Architecture.ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** Memory in MB; Lambda gives CPU in proportion (1,769 MB = one vCPU). @default 2048 */
  readonly memorySize?: number;
  /** @default Duration.seconds(30) */
  readonly timeout?: Duration;
  /** Concurrency reserved for (and capped at) this function. @default - none: the account's unreserved pool */
  readonly reservedConcurrency?: number;
  /** Instances kept initialised (no cold starts; billed while idle). @default - none */
  readonly provisionedConcurrency?: number;
  /** How often a warm instance checks `current.json` for a newly promoted model. @default 30 */
  readonly modelRefreshSeconds?: number;
  /** Largest dataset accepted in a request body; bigger files go through a presigned upload. @default 6 MiB (Lambda's limit) */
  readonly maxUploadBytes?: number;
  /** sha256 (hex) of an admin API key accepted before any key is created. @default - none */
  readonly adminKeySha256?: string;
}

/**
 * The HTTP API: the Hono app in one Lambda function (ONNX Runtime inside), reached through a Function URL on the
 * `live` alias. The URL has no IAM auth: the app checks `Authorization: Bearer` API keys itself.
 */
export class InferenceApi extends Construct {
  readonly function: lambda.IFunction;
  readonly alias: lambda.Alias;
  readonly url: lambda.FunctionUrl;

  constructor(scope: Construct, id: string, props: InferenceApiProps) {
    super(scope, id);
    const {
      store,
      queue,
      architecture = lambda.Architecture.ARM_64,
      memorySize = 2048,
      timeout = Duration.seconds(30),
      modelRefreshSeconds = 30,
      maxUploadBytes = 6 * 1024 * 1024,
    } = props;
    if (props.reservedConcurrency !== undefined && props.provisionedConcurrency !== undefined) {
      if (props.provisionedConcurrency > props.reservedConcurrency) {
        throw new Error(
          `provisionedConcurrency (${props.provisionedConcurrency}) cannot exceed reservedConcurrency (${props.reservedConcurrency}).`,
        );
      }
    }
    if (props.adminKeySha256 !== undefined && !/^[0-9a-f]{64}$/.test(props.adminKeySha256)) {
      throw new Error(
        'adminKeySha256 must be 64 lowercase hex digits: the sha256 of the key, never the key itself.',
      );
    }

    const environment: Record<string, string> = {
      ...awsConfigEnvironment(store.bucket.bucketName, queue.queueUrl),
      [ENV.modelRefreshSeconds]: String(modelRefreshSeconds),
      [ENV.maxUploadBytes]: String(maxUploadBytes),
    };
    if (props.adminKeySha256) environment[ENV.apiKeyHash] = props.adminKeySha256;

    const fn = new GraftFunction(this, 'Handler', {
      entry: 'functions/aws/api.ts',
      description: 'Graft HTTP API: predictions, embeddings, datasets, jobs and models',
      architecture,
      memorySize,
      timeout,
      reservedConcurrentExecutions: props.reservedConcurrency,
      onnxRuntime: true,
      environment,
    });
    this.function = fn.function;
    this.alias = new lambda.Alias(this, 'Live', {
      aliasName: 'live',
      version: fn.function.currentVersion,
      provisionedConcurrentExecutions: props.provisionedConcurrency,
    });
    this.url = this.alias.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
    store.grantServing(fn.function);
    queue.grantSendMessages(fn.function);
  }
}
