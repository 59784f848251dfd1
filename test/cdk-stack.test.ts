import { readFileSync } from 'node:fs';
import path from 'node:path';
import { App, Duration } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { KEY_PATTERNS } from '../cdk/constructs/artifact-store.js';
import { stackPropsFromContext } from '../cdk/context.js';
import { GraftStack, type GraftStackProps } from '../cdk/graft-stack.js';
import { TRAINER_ENV } from '../src/adapters/aws/trainer-contract.js';
import { ENV } from '../src/config.js';

// Tests synthesise without bundling the Lambda code (no esbuild, no npm install) and without copying asset
// directories: the template is the same, only the asset hashes differ. test/cdk-synth.test.ts bundles for real.
const FAST_SYNTH = { 'aws:cdk:bundling-stacks': [], 'aws:cdk:disable-asset-staging': true };

function synth(props: GraftStackProps = {}) {
  const app = new App({ context: FAST_SYNTH });
  const stack = new GraftStack(app, 'Graft', props);
  return { app, stack, template: Template.fromStack(stack) };
}

const byDefault = synth();
const template = byDefault.template;

/** The statements of every IAM policy attached to the role a resource (function or job) runs as. */
function statementsOf(roleLogicalIdPrefix: string) {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.entries(policies)
    .filter(([id]) => id.startsWith(roleLogicalIdPrefix))
    .flatMap(([, policy]) => policy.Properties.PolicyDocument.Statement as Statement[]);
}
interface Statement {
  Action: string | string[];
  Resource: unknown;
  Effect: string;
}
const actions = (statement: Statement) => [statement.Action].flat();
/** The key patterns an action may touch, read off `Fn::Join [bucketArn, "/pattern"]` resources. */
function patternsFor(statements: Statement[], action: string): string[] {
  return statements
    .filter((s) => actions(s).includes(action))
    .flatMap((s) => [s.Resource].flat())
    .map((resource) => {
      const parts = (resource as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join']?.[1];
      return typeof parts?.[1] === 'string' ? parts[1].replace(/^\//, '') : JSON.stringify(resource);
    })
    .sort();
}

describe('artifact store', () => {
  it('is one versioned, SSE-encrypted bucket with all public access blocked, kept on stack deletion', () => {
    template.resourceCountIs('AWS::S3::Bucket', 1);
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        VersioningConfiguration: { Status: 'Enabled' },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      }),
    });
  });

  it('refuses plain HTTP and TLS below 1.2', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Deny', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
        ]),
      },
    });
  });

  it('expires temporary keys, stale job-record versions and abandoned multipart uploads', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' }),
          Match.objectLike({ Prefix: 'tmp/', ExpirationInDays: 1 }),
          Match.objectLike({ Prefix: 'jobs/', NoncurrentVersionExpiration: { NoncurrentDays: 1 } }),
          Match.objectLike({
            NoncurrentVersionExpiration: { NoncurrentDays: 30 },
            ExpiredObjectDeleteMarker: true,
          }),
        ]),
      },
    });
  });

  it('routes Object Created under tasks/*/incoming/ to the job queue through EventBridge', () => {
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
    const queueId = Object.keys(
      template.findResources('AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } }),
    )[0];
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: {
          bucket: { name: [{ Ref: Match.stringLikeRegexp('^ArtifactStoreBucket') }] },
          object: { key: [{ wildcard: 'tasks/*/incoming/*' }] },
        },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [queueId, 'Arn'] } })],
    });
    // EventBridge may send to the queue, and only for that rule.
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['sqs:SendMessage']),
            Principal: { Service: 'events.amazonaws.com' },
            Condition: { ArnEquals: { 'aws:SourceArn': Match.anyValue() } },
          }),
        ]),
      },
    });
  });
});

describe('inference API', () => {
  it('is a Node.js 22 ESM bundle on arm64 with documented defaults and the config env vars', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft HTTP API'),
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: 2048,
      Timeout: 30,
      Environment: {
        Variables: Match.objectLike({
          [ENV.bucket]: { Ref: Match.stringLikeRegexp('^ArtifactStoreBucket') },
          [ENV.queueUrl]: { Ref: Match.stringLikeRegexp('^TrainingQueue') },
          [ENV.modelRefreshSeconds]: '30',
          [ENV.maxUploadBytes]: String(6 * 1024 * 1024),
        }),
      },
    });
    const api = Object.values(template.findResources('AWS::Lambda::Function')).find((f) =>
      String(f.Properties.Description).startsWith('Graft HTTP API'),
    );
    expect(api?.Properties.ReservedConcurrentExecutions).toBeUndefined();
    expect(api?.Properties.Environment.Variables[ENV.apiKeyHash]).toBeUndefined();
  });

  it('is reached through a Function URL on the live alias (auth by API keys in the app)', () => {
    template.hasResourceProperties('AWS::Lambda::Alias', { Name: 'live' });
    template.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'NONE', Qualifier: 'live' });
    const alias = Object.values(template.findResources('AWS::Lambda::Alias'))[0];
    expect(alias?.Properties.ProvisionedConcurrencyConfig).toBeUndefined();
    template.hasOutput('ApiUrl', {
      Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ApiLiveFunctionUrl'), 'FunctionUrl'] },
    });
    template.hasOutput('BucketName', { Value: { Ref: Match.stringLikeRegexp('^ArtifactStoreBucket') } });
  });

  it('takes architecture, memory, timeout, reserved and provisioned concurrency and the admin key as props', () => {
    const { template: custom } = synth({
      architecture: lambda.Architecture.X86_64,
      api: {
        memorySize: 3008,
        timeout: Duration.seconds(60),
        reservedConcurrency: 20,
        provisionedConcurrency: 2,
        adminKeySha256: 'a'.repeat(64),
      },
    });
    custom.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft HTTP API'),
      Architectures: ['x86_64'],
      MemorySize: 3008,
      Timeout: 60,
      ReservedConcurrentExecutions: 20,
      Environment: { Variables: Match.objectLike({ [ENV.apiKeyHash]: 'a'.repeat(64) }) },
    });
    custom.hasResourceProperties('AWS::Lambda::Alias', {
      Name: 'live',
      ProvisionedConcurrencyConfig: { ProvisionedConcurrentExecutions: 2 },
    });
    custom.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft dispatcher'),
      Architectures: ['x86_64'],
    });
  });

  it('refuses settings that cannot deploy', () => {
    expect(() => synth({ api: { reservedConcurrency: 1, provisionedConcurrency: 2 } })).toThrow(
      /cannot exceed/,
    );
    expect(() => synth({ api: { adminKeySha256: 'my-secret-key' } })).toThrow(/sha256/);
    expect(() => synth({ training: { maxVcpus: 2 } })).toThrow(/maxVcpus/);
  });

  it('reads models and jobs, writes datasets, jobs, pointers and uploads, and sends to the queue', () => {
    const statements = statementsOf('ApiHandlerRole');
    expect(patternsFor(statements, 's3:GetObject')).toEqual(
      [KEY_PATTERNS.apiKeys, KEY_PATTERNS.backbones, KEY_PATTERNS.jobs, KEY_PATTERNS.tasks].sort(),
    );
    expect(patternsFor(statements, 's3:PutObject')).toEqual(
      [
        KEY_PATTERNS.apiKeys,
        KEY_PATTERNS.currentPointers,
        KEY_PATTERNS.datasets,
        KEY_PATTERNS.incoming,
        KEY_PATTERNS.jobs,
        KEY_PATTERNS.taskRecords,
      ].sort(),
    );
    expect(patternsFor(statements, 's3:DeleteObject')).toEqual([]);
    expect(statements.some((s) => actions(s).includes('sqs:SendMessage'))).toBe(true);
    expect(statements.some((s) => actions(s).includes('sqs:ReceiveMessage'))).toBe(false);
  });
});

describe('training pipeline', () => {
  it('has a job queue that moves a message to its dead-letter queue after 3 receives', () => {
    template.resourceCountIs('AWS::SQS::Queue', 2);
    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingDeadLetterQueue'), 'Arn'] },
        maxReceiveCount: 3,
      },
      VisibilityTimeout: 720,
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 1_209_600,
      SqsManagedSseEnabled: true,
    });
  });

  it('feeds the dispatcher Lambda from the queue with partial batch failure reporting', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingQueue'), 'Arn'] },
      FunctionName: { Ref: Match.stringLikeRegexp('^TrainingDispatcherFunction') },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft dispatcher'),
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Timeout: 120,
      Environment: {
        Variables: Match.objectLike({
          [ENV.batchJobQueue]: {
            'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingBatchJobQueue'), 'JobQueueArn'],
          },
          [ENV.batchJobDefinition]: { Ref: Match.stringLikeRegexp('^TrainingTrainerJobDefinition') },
        }),
      },
    });
  });

  it('lets the dispatcher submit only to its job queue and definition, ingest, and delete only incoming files', () => {
    const statements = statementsOf('TrainingDispatcherRole');
    const submit = statements.find((s) => actions(s).includes('batch:SubmitJob'));
    expect(JSON.stringify(submit?.Resource)).toContain('TrainingBatchJobQueue');
    expect(JSON.stringify(submit?.Resource)).toContain('TrainingTrainerJobDefinition');
    expect(patternsFor(statements, 's3:DeleteObject')).toEqual([KEY_PATTERNS.incoming]);
    expect(patternsFor(statements, 's3:PutObject')).toEqual(
      [KEY_PATTERNS.datasets, KEY_PATTERNS.jobs, KEY_PATTERNS.rejected, KEY_PATTERNS.taskRecords].sort(),
    );
  });

  it('feeds the dead-letter queue to its own handler, which may only read and write job records', () => {
    // given the handler's function and role
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingDeadLetterQueue'), 'Arn'] },
      FunctionName: { Ref: Match.stringLikeRegexp('^TrainingDeadLetterHandlerFunction') },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft dead letters'),
      Runtime: 'nodejs22.x',
      Timeout: 30,
      Environment: { Variables: Match.objectLike({ [ENV.bucket]: Match.anyValue() }) },
    });
    // Lambda refuses an SQS source whose visibility timeout is shorter than the function's timeout
    template.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 1_209_600,
      VisibilityTimeout: 180,
    });
    const statements = statementsOf('TrainingDeadLetterHandlerRole');
    // then: job records only, and consuming its own queue
    expect(patternsFor(statements, 's3:GetObject')).toEqual([KEY_PATTERNS.jobs]);
    expect(patternsFor(statements, 's3:PutObject')).toEqual([KEY_PATTERNS.jobs]);
    expect(patternsFor(statements, 's3:DeleteObject')).toEqual([]);
    const sqsActions = statements.flatMap(actions).filter((a) => a.startsWith('sqs:'));
    expect(sqsActions).not.toContain('sqs:SendMessage');
    const receive = statements.find((s) => actions(s).includes('sqs:ReceiveMessage'));
    expect(JSON.stringify(receive?.Resource)).toMatch(/"TrainingDeadLetterQueue[0-9A-F]{8}","Arn"/);
    expect(statements.flatMap(actions).some((a) => a.startsWith('batch:'))).toBe(false);
  });

  it('routes FAILED Batch jobs of its own job queue to the Batch events handler, which may only touch job records', () => {
    // given the rule and the function
    const handlerId = Object.keys(
      template.findResources('AWS::Lambda::Function', {
        Properties: { Description: Match.stringLikeRegexp('^Graft Batch events') },
      }),
    )[0];
    expect(handlerId).toMatch(/^TrainingBatchEventsHandlerFunction/);
    // then: Batch's state changes to FAILED, of this stack's job queue only, go to that function
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.batch'],
        'detail-type': ['Batch Job State Change'],
        detail: {
          status: ['FAILED'],
          jobQueue: [{ 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingBatchJobQueue'), 'JobQueueArn'] }],
        },
      },
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [handlerId, 'Arn'] } })],
    });
    // EventBridge may invoke it, for that rule only
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [handlerId, 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingTrainerFailedRule'), 'Arn'] },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Graft Batch events'),
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Timeout: 30,
      Environment: { Variables: Match.objectLike({ [ENV.bucket]: Match.anyValue() }) },
    });
    const statements = statementsOf('TrainingBatchEventsHandlerRole');
    expect(patternsFor(statements, 's3:GetObject')).toEqual([KEY_PATTERNS.jobs]);
    expect(patternsFor(statements, 's3:PutObject')).toEqual([KEY_PATTERNS.jobs]);
    expect(patternsFor(statements, 's3:DeleteObject')).toEqual([]);
    expect(statements.flatMap(actions).filter((a) => !a.startsWith('s3:') && !a.startsWith('logs:'))).toEqual(
      [],
    );
  });

  it('runs on a GPU compute environment of g5/g6 instances that scales to zero', () => {
    template.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      Type: 'managed',
      ComputeResources: Match.objectLike({
        Type: 'EC2',
        InstanceTypes: ['g5', 'g6'],
        MinvCpus: 0,
        MaxvCpus: 16,
        AllocationStrategy: 'BEST_FIT_PROGRESSIVE',
        Ec2Configuration: [{ ImageType: 'ECS_AL2023_NVIDIA' }],
      }),
    });
    template.resourceCountIs('AWS::Batch::JobQueue', 1);
    // No NAT gateway: nothing in the network costs money while idle.
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::FlowLog', 1);
  });

  it('can use Spot capacity and a larger vCPU ceiling', () => {
    const { template: spot } = synth({ training: { spot: true, maxVcpus: 64 } });
    spot.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({
        Type: 'SPOT',
        MaxvCpus: 64,
        AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED',
      }),
    });
  });

  it('defines the trainer job: 1 GPU, the Dockerfile image, timeout and retries keyed on exit codes', () => {
    template.hasResourceProperties('AWS::Batch::JobDefinition', {
      Type: 'container',
      PlatformCapabilities: ['EC2'],
      ContainerProperties: Match.objectLike({
        ResourceRequirements: [
          { Type: 'MEMORY', Value: '14336' },
          { Type: 'VCPU', Value: '4' },
          { Type: 'GPU', Value: '1' },
        ],
        Image: { 'Fn::Sub': Match.stringLikeRegexp('container-assets') },
        JobRoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingTrainerRole'), 'Arn'] },
        Environment: Match.arrayWith([
          { Name: ENV.bucket, Value: { Ref: Match.stringLikeRegexp('^ArtifactStoreBucket') } },
          { Name: TRAINER_ENV.maxAttempts, Value: '3' },
        ]),
        LogConfiguration: Match.objectLike({ LogDriver: 'awslogs' }),
      }),
      Timeout: { AttemptDurationSeconds: 7200 },
      RetryStrategy: {
        Attempts: 3,
        EvaluateOnExit: [
          { Action: 'RETRY', OnStatusReason: 'Host EC2*' },
          { Action: 'RETRY', OnReason: 'CannotPullContainerError:*' },
          { Action: 'RETRY', OnExitCode: '1' },
          { Action: 'EXIT', OnExitCode: '*' },
        ],
      },
    });
  });

  it('builds the trainer image from docker/trainer.Dockerfile for linux/amd64 without a Docker engine at synth', () => {
    const app = new App({ context: FAST_SYNTH });
    new GraftStack(app, 'Graft');
    const assembly = app.synth();
    const manifest = JSON.parse(readFileSync(path.join(assembly.directory, 'Graft.assets.json'), 'utf8')) as {
      dockerImages: Record<string, { source: Record<string, unknown> }>;
    };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0]?.source).toMatchObject({
      dockerFile: 'docker/trainer.Dockerfile',
      platform: 'linux/amd64',
      dockerBuildArgs: { ORT_INSTALL: 'cuda12' },
    });
  });

  it('lets the trainer write only models, current pointers, job records and the cache', () => {
    const statements = statementsOf('TrainingTrainerRole');
    expect(patternsFor(statements, 's3:PutObject')).toEqual(
      [KEY_PATTERNS.cache, KEY_PATTERNS.currentPointers, KEY_PATTERNS.jobs, KEY_PATTERNS.models].sort(),
    );
    expect(patternsFor(statements, 's3:GetObject')).toEqual(
      [KEY_PATTERNS.backbones, KEY_PATTERNS.cache, KEY_PATTERNS.jobs, KEY_PATTERNS.tasks].sort(),
    );
    expect(patternsFor(statements, 's3:DeleteObject')).toEqual([]);
    expect(
      statements.some((s) => actions(s).some((a) => a.startsWith('sqs:') || a.startsWith('batch:'))),
    ).toBe(false);
  });

  it('offers CPU-only training on Fargate for accounts without GPU quota', () => {
    const { template: cpu } = synth({ training: { gpu: false } });
    cpu.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ Type: 'FARGATE', MaxvCpus: 16 }),
    });
    cpu.hasResourceProperties('AWS::Batch::JobDefinition', {
      PlatformCapabilities: ['FARGATE'],
      ContainerProperties: Match.objectLike({
        ResourceRequirements: Match.not(Match.arrayWith([Match.objectLike({ Type: 'GPU' })])),
        NetworkConfiguration: { AssignPublicIp: 'ENABLED' },
      }),
    });
  });
});

describe('least privilege', () => {
  it('grants no * action and no action on * except ECR login', () => {
    for (const [id, policy] of Object.entries(template.findResources('AWS::IAM::Policy'))) {
      for (const statement of policy.Properties.PolicyDocument.Statement as Statement[]) {
        expect(actions(statement), id).not.toContain('*');
        expect(
          actions(statement).some((a) => a.endsWith(':*')),
          id,
        ).toBe(false);
        if (statement.Resource === '*') expect(actions(statement), id).toEqual(['ecr:GetAuthorizationToken']);
      }
    }
  });

  it('gives no role of ours an AWS-managed policy except the Batch instance role', () => {
    const managed = Object.entries(template.findResources('AWS::IAM::Role'))
      .filter(([, role]) => role.Properties.ManagedPolicyArns)
      .map(([id]) => id.replace(/[0-9A-F]{8}$/, ''));
    expect(managed.sort()).toEqual(
      [
        'BucketNotificationsHandler050a0587b7544547bf325f094a3db834Role',
        'TrainingGpuComputeEnvironmentInstanceProfileRole',
      ].sort(),
    );
  });
});

describe('alarms', () => {
  it('alarm on any dead letter, on any Batch events handler error and on API errors', () => {
    // the dead-letter handler empties the queue within seconds: what is counted is messages received from it
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'NumberOfMessagesReceived',
      Statistic: 'Sum',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TrainingDeadLetterQueue'), 'QueueName'] },
        },
      ],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp('^ApiHandlerFunction') } }],
      Threshold: 5,
    });
    // an error of the Batch events handler may leave a job running
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [
        {
          Name: 'FunctionName',
          Value: { Ref: Match.stringLikeRegexp('^TrainingBatchEventsHandlerFunction') },
        },
      ],
      Threshold: 1,
    });
    template.resourceCountIs('AWS::SNS::Topic', 0);
  });

  it('notify an e-mail address through a TLS-only topic when one is given', () => {
    const { template: mailed } = synth({ alarmEmail: 'ops@example.com' });
    mailed.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    mailed.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'NumberOfMessagesReceived',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
    });
    const alarms = Object.values(mailed.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(3);
    for (const alarm of alarms)
      expect(alarm.Properties.AlarmActions).toEqual([{ Ref: expect.stringMatching(/^AlarmsTopic/) }]);
    mailed.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });
});

describe('cdk-nag AwsSolutions', () => {
  it.each([
    ['the defaults', {}],
    [
      'x86_64, CPU-only, Spot, alarm e-mail, bucket destroyed with the stack',
      {
        architecture: lambda.Architecture.X86_64,
        training: { gpu: false, spot: true },
        alarmEmail: 'ops@example.com',
        removalPolicy: stackPropsFromContext(new App({ context: { 'graft:removalPolicy': 'destroy' } }).node)
          .props.removalPolicy,
      },
    ],
  ] as [string, GraftStackProps][])('finds nothing unacknowledged with %s', (_name, props) => {
    // given
    const app = new App({ context: FAST_SYNTH });
    const stack = new GraftStack(app, 'Graft', props);
    // when
    const report = new AwsSolutionsChecks(app).validateScope(stack);
    // then
    const violations = report.violations.map(
      (v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
    );
    expect(violations).toEqual([]);
  });

  it('gives a reason for every acknowledgement', () => {
    const reasons: string[] = [];
    for (const construct of byDefault.stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== 'aws:cdk:acknowledged-rules') continue;
        reasons.push(...Object.values(entry.data as Record<string, string>));
      }
    }
    expect(reasons.length).toBeGreaterThan(0);
    for (const reason of reasons) expect(reason.length).toBeGreaterThan(40);
  });
});

describe('context', () => {
  it('turns -c graft:* strings into stack props and refuses unknown values', () => {
    const read = (context: Record<string, string>) => stackPropsFromContext(new App({ context }).node);
    const parsed = read({
      'graft:architecture': 'x86_64',
      'graft:gpu': 'false',
      'graft:spot': 'true',
      'graft:maxVcpus': '32',
      'graft:trainerMemoryGiB': '30',
      'graft:jobTimeoutMinutes': '240',
      'graft:provisionedConcurrency': '1',
      'graft:stackName': 'GraftDev',
      'graft:nag': 'false',
    });
    expect(parsed.stackName).toBe('GraftDev');
    expect(parsed.nag).toBe(false);
    expect(parsed.props.architecture).toBe(lambda.Architecture.X86_64);
    expect(parsed.props.training).toMatchObject({ gpu: false, spot: true, maxVcpus: 32 });
    expect(parsed.props.training?.trainerMemory?.toGibibytes()).toBe(30);
    expect(parsed.props.training?.jobTimeout?.toMinutes()).toBe(240);
    expect(read({}).props.training?.trainerMemory).toBeUndefined();
    expect(parsed.props.api?.provisionedConcurrency).toBe(1);
    expect(read({}).stackName).toBe('Graft');
    expect(() => read({ 'graft:architecture': 'arm' })).toThrow(/arm64, x86_64/);
    expect(() => read({ 'graft:gpu': 'yes' })).toThrow(/true or false/);
    expect(() => read({ 'graft:maxVcpus': '-1' })).toThrow(/whole number/);
  });
});
