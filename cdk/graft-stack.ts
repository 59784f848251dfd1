import { CfnOutput, type RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { Alarms } from './constructs/alarms.js';
import { ArtifactStore } from './constructs/artifact-store.js';
import { InferenceApi, type InferenceApiProps } from './constructs/inference-api.js';
import { TrainingPipeline, type TrainingPipelineProps } from './constructs/training-pipeline.js';
import { acknowledgeStackLevelFindings } from './nag-suppressions.js';

export interface GraftStackProps extends StackProps {
  /** CPU architecture of the Lambda functions. @default lambda.Architecture.ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** Settings of the API function (memory, timeout, concurrency, admin key). @default InferenceApi's defaults */
  readonly api?: Omit<InferenceApiProps, 'store' | 'queue' | 'architecture'>;
  /** Settings of the training side (GPU or CPU, Spot, max vCPUs, timeout). @default TrainingPipeline's defaults */
  readonly training?: Omit<TrainingPipelineProps, 'store' | 'architecture'>;
  /** E-mail address for alarm notifications. @default - alarms only, no notification */
  readonly alarmEmail?: string;
  /** What happens to the bucket (datasets, models) when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Graft in one account: the artifact bucket, the prediction API, the upload -> training pipeline on AWS Batch,
 * and alarms. Construct ids are stable: renaming one replaces its resources.
 */
export class GraftStack extends Stack {
  readonly store: ArtifactStore;
  readonly training: TrainingPipeline;
  readonly api: InferenceApi;
  readonly alarms: Alarms;

  constructor(scope: Construct, id: string, props: GraftStackProps = {}) {
    super(scope, id, {
      description: 'Graft: transfer learning with a hosted prediction API, in your own AWS account',
      ...props,
    });
    const architecture = props.architecture ?? lambda.Architecture.ARM_64;

    this.store = new ArtifactStore(this, 'ArtifactStore', { removalPolicy: props.removalPolicy });
    this.training = new TrainingPipeline(this, 'Training', {
      ...props.training,
      store: this.store,
      architecture,
    });
    this.store.sendIncomingTo(this.training.queue);
    this.api = new InferenceApi(this, 'Api', {
      ...props.api,
      store: this.store,
      queue: this.training.queue,
      architecture,
    });
    this.alarms = new Alarms(this, 'Alarms', {
      deadLetterQueue: this.training.deadLetterQueue,
      api: this.api.function,
      batchEventsHandler: this.training.batchEventsHandler,
      alarmEmail: props.alarmEmail,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.api.url.url, description: 'Base URL of the Graft HTTP API' });
    new CfnOutput(this, 'BucketName', {
      value: this.store.bucket.bucketName,
      description: 'Artifact bucket: drop files under tasks/{task}/incoming/ to retrain',
    });
    new CfnOutput(this, 'JobQueueUrl', { value: this.training.queue.queueUrl });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.training.deadLetterQueue.queueUrl });
    new CfnOutput(this, 'BatchJobQueueArn', { value: this.training.jobQueue.jobQueueArn });

    acknowledgeStackLevelFindings(this);
  }
}
