import { Duration, IgnoreMode, RemovalPolicy, Size, Validations } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { TRAINER_ENV, TRAINER_EXIT } from '../../src/adapters/aws/trainer-contract.js';
import { ENV } from '../../src/config.js';
import { MAX_DELIVERIES } from '../../src/core/delivery.js';
import type { ArtifactStore } from './artifact-store.js';
import { awsConfigEnvironment, GraftFunction, PROJECT_ROOT } from './graft-function.js';

/** How many times Batch starts the trainer for one job (first run included). */
export const TRAINER_ATTEMPTS = 3;

/** The Docker build context is the repository, minus everything the trainer image does not need. */
const TRAINER_CONTEXT_ALLOW = [
  'package.json',
  'package-lock.json',
  '.npmrc',
  'tsconfig.json',
  'src',
  'functions',
  'docker',
  'cdk/scripts',
];

export interface TrainingPipelineProps {
  readonly store: ArtifactStore;
  /**
   * Train on GPU instances (g5/g6 with one NVIDIA GPU, CUDA execution provider). `false` trains on Fargate CPUs
   * instead, for accounts without GPU quota (slower, no quota request needed).
   * @default true
   */
  readonly gpu?: boolean;
  /** Run training on Spot capacity (about 60-70% cheaper; interrupted jobs are retried). @default false */
  readonly spot?: boolean;
  /** Upper bound of the compute environment, in vCPUs (a g5.xlarge has 4). It scales to zero when idle. @default 16 */
  readonly maxVcpus?: number;
  /** GPU instance families Batch may choose from. @default [G5, G6] */
  readonly gpuInstanceClasses?: ec2.InstanceClass[];
  /** vCPUs of one trainer container. @default 4 */
  readonly trainerVcpus?: number;
  /** Memory of one trainer container (a g5.xlarge has 16 GiB, part of it kept by ECS). @default 14 GiB */
  readonly trainerMemory?: Size;
  /** A training attempt that runs longer is stopped. @default Duration.hours(2) */
  readonly jobTimeout?: Duration;
  /** @default an image built from docker/trainer.Dockerfile (at deploy time; synth needs no Docker engine) */
  readonly trainerImage?: ecs.ContainerImage;
  /** @default a VPC with two public subnets and no NAT gateway (nothing idles at a cost) */
  readonly vpc?: ec2.IVpc;
  /** Architecture of the dispatcher Lambda. */
  readonly architecture: lambda.Architecture;
}

/**
 * Upload -> training: the SQS job queue (with its dead-letter queue after 3 receives), the dispatcher Lambda that
 * turns queue messages into dataset versions and Batch jobs, the dead-letter Lambda that fails the job of a
 * message that failed every delivery, AWS Batch (compute environment scaling from 0, job queue, trainer job
 * definition with timeout and retry strategy), and the Batch events Lambda that fails the job of a trainer Batch
 * stopped for good.
 */
export class TrainingPipeline extends Construct {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly dispatcher: lambda.IFunction;
  readonly deadLetterHandler: lambda.IFunction;
  readonly batchEventsHandler: lambda.IFunction;
  readonly trainerFailedRule: events.Rule;
  readonly computeEnvironment: batch.IManagedComputeEnvironment;
  readonly jobQueue: batch.JobQueue;
  readonly jobDefinition: batch.EcsJobDefinition;
  readonly jobRole: iam.Role;

  constructor(scope: Construct, id: string, props: TrainingPipelineProps) {
    super(scope, id);
    const {
      store,
      gpu = true,
      spot = false,
      maxVcpus = 16,
      gpuInstanceClasses = [ec2.InstanceClass.G5, ec2.InstanceClass.G6],
      trainerVcpus = 4,
      trainerMemory = Size.gibibytes(14),
      jobTimeout = Duration.hours(2),
    } = props;
    if (!Number.isInteger(maxVcpus) || maxVcpus < trainerVcpus) {
      throw new Error(
        `maxVcpus (${maxVcpus}) must be a whole number of at least trainerVcpus (${trainerVcpus}).`,
      );
    }
    const dispatcherTimeout = Duration.minutes(2);
    const deadLetterTimeout = Duration.seconds(30);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      // Lambda's advice for SQS event sources; also how soon a job a live worker still held is looked at again.
      visibilityTimeout: Duration.seconds(deadLetterTimeout.toSeconds() * 6),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      // Lambda's advice for SQS event sources: six times the function timeout.
      visibilityTimeout: Duration.seconds(dispatcherTimeout.toSeconds() * 6),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: MAX_DELIVERIES },
    });

    const environment = awsConfigEnvironment(store.bucket.bucketName, this.queue.queueUrl);

    const vpc = props.vpc ?? this.#createVpc();
    this.computeEnvironment = gpu
      ? new batch.ManagedEc2EcsComputeEnvironment(this, 'GpuComputeEnvironment', {
          vpc,
          vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
          instanceClasses: gpuInstanceClasses,
          useOptimalInstanceClasses: false,
          images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023_NVIDIA }],
          spot,
          minvCpus: 0,
          maxvCpus: maxVcpus,
          updateToLatestImageVersion: true,
        })
      : new batch.FargateComputeEnvironment(this, 'CpuComputeEnvironment', {
          vpc,
          vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
          spot,
          maxvCpus: maxVcpus,
        });
    if (gpu) {
      Validations.of(this.computeEnvironment).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
        reason:
          'The ECS agent on the Batch GPU instances needs this AWS-managed instance role (cluster registration, ' +
          'ECR pulls, logs); it grants no access to Graft data, which only the trainer job role has.',
      });
    }
    this.jobQueue = new batch.JobQueue(this, 'BatchJobQueue', {
      computeEnvironments: [{ computeEnvironment: this.computeEnvironment, order: 1 }],
    });

    this.jobRole = new iam.Role(this, 'TrainerRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Graft trainer: reads datasets, writes models, job records and the embedding cache',
    });
    store.grantTraining(this.jobRole);
    const trainerLogs = new logs.LogGroup(this, 'TrainerLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const image =
      props.trainerImage ??
      ecs.ContainerImage.fromAsset(PROJECT_ROOT, {
        file: 'docker/trainer.Dockerfile',
        platform: Platform.LINUX_AMD64,
        buildArgs: gpu ? { ORT_INSTALL: 'cuda12' } : { BASE_IMAGE: 'ubuntu:24.04', ORT_INSTALL: 'skip' },
        ignoreMode: IgnoreMode.DOCKER,
        exclude: ['*', ...TRAINER_CONTEXT_ALLOW.map((entry) => `!${entry}`)],
      });
    const containerProps = {
      image,
      cpu: trainerVcpus,
      memory: trainerMemory,
      jobRole: this.jobRole,
      logging: ecs.LogDriver.awsLogs({ streamPrefix: 'trainer', logGroup: trainerLogs }),
      environment: { ...environment, [TRAINER_ENV.maxAttempts]: String(TRAINER_ATTEMPTS) },
    };
    const container = gpu
      ? new batch.EcsEc2ContainerDefinition(this, 'TrainerContainer', { ...containerProps, gpu: 1 })
      : new batch.EcsFargateContainerDefinition(this, 'TrainerContainer', {
          ...containerProps,
          assignPublicIp: true,
          fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
        });
    Validations.of(container).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecr:GetAuthorizationToken (pulling the trainer image) has no resource-level permissions; it is the only action on *.',
    });
    this.jobDefinition = new batch.EcsJobDefinition(this, 'TrainerJobDefinition', {
      container,
      timeout: jobTimeout,
      retryAttempts: TRAINER_ATTEMPTS,
      // Lost infrastructure and attempts the trainer calls worth repeating are retried; a job that failed for
      // good (its record says why) or any other exit is not.
      retryStrategies: [
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
        batch.RetryStrategy.of(
          batch.Action.RETRY,
          batch.Reason.custom({ onExitCode: String(TRAINER_EXIT.retry) }),
        ),
        batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onExitCode: '*' })),
      ],
      parameters: { jobId: 'none' },
    });

    const dispatcher = new GraftFunction(this, 'Dispatcher', {
      entry: 'functions/aws/dispatcher.ts',
      description: 'Graft dispatcher: queue messages -> dataset versions and AWS Batch training jobs',
      architecture: props.architecture,
      memorySize: 1024,
      timeout: dispatcherTimeout,
      onnxRuntime: false,
      environment: {
        ...environment,
        [ENV.batchJobQueue]: this.jobQueue.jobQueueArn,
        [ENV.batchJobDefinition]: this.jobDefinition.jobDefinitionArn,
      },
    });
    this.dispatcher = dispatcher.function;
    dispatcher.function.addEventSource(
      new SqsEventSource(this.queue, { batchSize: 10, reportBatchItemFailures: true }),
    );
    store.grantIngest(dispatcher.function);
    this.queue.grantSendMessages(dispatcher.function);
    this.jobDefinition.grantSubmitJob(dispatcher.function, this.jobQueue);

    // Without it, the job of a message that failed every delivery would stay queued or running for ever.
    const deadLetters = new GraftFunction(this, 'DeadLetterHandler', {
      entry: 'functions/aws/dead-letters.ts',
      description: 'Graft dead letters: fails the job of a queue message that failed every delivery',
      architecture: props.architecture,
      memorySize: 256,
      timeout: deadLetterTimeout,
      onnxRuntime: false,
      environment,
    });
    this.deadLetterHandler = deadLetters.function;
    deadLetters.function.addEventSource(
      new SqsEventSource(this.deadLetterQueue, { batchSize: 10, reportBatchItemFailures: true }),
    );
    store.grantJobRecords(deadLetters.function);

    // The dispatcher deleted the job's message once Batch took it, so a trainer that Batch stops for good (killed
    // for memory, past its timeout, failed on its last attempt) never reaches the dead-letter queue: Batch's own
    // FAILED event, for this stack's job queue only, fails its job instead.
    const batchEvents = new GraftFunction(this, 'BatchEventsHandler', {
      entry: 'functions/aws/batch-events.ts',
      description: 'Graft Batch events: fails the job of a trainer that AWS Batch stopped for good',
      architecture: props.architecture,
      memorySize: 256,
      timeout: Duration.seconds(30),
      onnxRuntime: false,
      environment,
    });
    this.batchEventsHandler = batchEvents.function;
    store.grantJobRecords(batchEvents.function);
    // EventBridge invokes the function asynchronously: an event it throws on (S3 unavailable) is retried twice by
    // Lambda, and the Alarms construct watches its errors.
    this.trainerFailedRule = new events.Rule(this, 'TrainerFailedRule', {
      description: 'Graft: a trainer job on the Graft Batch job queue failed for good',
      eventPattern: {
        source: ['aws.batch'],
        detailType: ['Batch Job State Change'],
        detail: { status: ['FAILED'], jobQueue: [this.jobQueue.jobQueueArn] },
      },
      targets: [new targets.LambdaFunction(batchEvents.function)],
    });
  }

  #createVpc(): ec2.Vpc {
    const flowLogs = new logs.LogGroup(this, 'VpcFlowLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    return new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs) } },
    });
  }
}
