import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { storageKeys } from '../../src/core/storage-keys.js';

/** IAM key patterns of the storage layout, built from the same functions the runtime uses to build keys. */
export const KEY_PATTERNS = {
  tasks: 'tasks/*',
  taskRecords: storageKeys.task('*'),
  currentPointers: storageKeys.current('*'),
  datasets: `${storageKeys.datasetsPrefix('*')}*`,
  incoming: `${storageKeys.incomingPrefix('*')}*`,
  rejected: `${storageKeys.rejectedPrefix('*')}*`,
  models: `${storageKeys.modelsPrefix('*')}*`,
  jobs: `${storageKeys.jobsPrefix()}*`,
  apiKeys: `${storageKeys.apiKeysPrefix()}*`,
  backbones: 'backbones/*',
  cache: 'cache/*',
  temporary: 'tmp/*',
} as const;

export interface ArtifactStoreProps {
  /**
   * What happens to the bucket, with every dataset and model in it, when the stack is deleted. DESTROY also
   * empties it first (a custom resource).
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /** How long replaced or deleted object versions are kept (the bucket is versioned). @default Duration.days(30) */
  readonly noncurrentVersionRetention?: Duration;
}

/**
 * The one S3 bucket that is both artifact store and metadata store (README "Storage layout"): versioned,
 * SSE-S3 encrypted, no public access, TLS only. New objects are announced to EventBridge, so that files dropped
 * under `tasks/{task}/incoming/` can be routed to the job queue by a rule that matches the middle wildcard (S3's
 * own notifications only filter on a prefix and a suffix).
 */
export class ArtifactStore extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ArtifactStoreProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const noncurrent = props.noncurrentVersionRetention ?? Duration.days(30);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      versioned: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      eventBridgeEnabled: true,
      removalPolicy,
      autoDeleteObjects: removalPolicy === RemovalPolicy.DESTROY,
      lifecycleRules: [
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        {
          id: 'expire-temporary-keys',
          prefix: 'tmp/',
          expiration: Duration.days(1),
          noncurrentVersionExpiration: Duration.days(1),
        },
        // A job record is rewritten at every progress step: its old versions are worthless after a day.
        {
          id: 'expire-old-job-record-versions',
          prefix: 'jobs/',
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'expire-old-versions',
          noncurrentVersionExpiration: noncurrent,
          expiredObjectDeleteMarker: true,
        },
      ],
    });
    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Server access logs would need a second bucket per deployment; every write already goes through the ' +
        'three Graft roles, and CloudTrail S3 data events can be enabled account-wide by the owner.',
    });
  }

  /**
   * Routes S3 "Object Created" events for `tasks/{task}/incoming/{file}` to `queue` (EventBridge rule with a
   * wildcard on the key; the dispatcher re-checks the key's shape).
   */
  sendIncomingTo(queue: sqs.IQueue): events.Rule {
    return new events.Rule(this, 'IncomingObjects', {
      description: 'Files dropped under tasks/{task}/incoming/ become dataset versions and fine-tune jobs',
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [this.bucket.bucketName] },
          object: { key: events.Match.wildcard(KEY_PATTERNS.incoming) },
        },
      },
      targets: [new targets.SqsQueue(queue)],
    });
  }

  /**
   * The prediction API: reads tasks, models, jobs, backbones and API keys (and signs model downloads with that
   * read access); writes task records, model pointers (promote/rollback), dataset versions, presigned uploads to
   * `incoming/`, job records and API keys.
   */
  grantServing(grantee: iam.IGrantable): void {
    this.#grant(grantee, {
      read: [KEY_PATTERNS.tasks, KEY_PATTERNS.jobs, KEY_PATTERNS.backbones, KEY_PATTERNS.apiKeys],
      write: [
        KEY_PATTERNS.taskRecords,
        KEY_PATTERNS.currentPointers,
        KEY_PATTERNS.datasets,
        KEY_PATTERNS.incoming,
        KEY_PATTERNS.jobs,
        KEY_PATTERNS.apiKeys,
      ],
    });
  }

  /**
   * The dispatcher: reads an incoming file and the task, stores the dataset version, takes a model version
   * number (task record), records the job, and deletes the ingested file; a file that cannot become a dataset
   * is moved to `rejected/` beside the reason.
   */
  grantIngest(grantee: iam.IGrantable): void {
    this.#grant(grantee, {
      read: [KEY_PATTERNS.tasks, KEY_PATTERNS.jobs],
      write: [KEY_PATTERNS.taskRecords, KEY_PATTERNS.datasets, KEY_PATTERNS.rejected, KEY_PATTERNS.jobs],
      delete: [KEY_PATTERNS.incoming],
    });
  }

  /**
   * The trainer: reads tasks, datasets, backbones, the embedding cache and its job; writes only model files and
   * cards, the `current.json` pointer when the promotion policy allows, its job record and the embedding cache.
   */
  grantTraining(grantee: iam.IGrantable): void {
    this.#grant(grantee, {
      read: [KEY_PATTERNS.tasks, KEY_PATTERNS.jobs, KEY_PATTERNS.backbones, KEY_PATTERNS.cache],
      write: [KEY_PATTERNS.models, KEY_PATTERNS.currentPointers, KEY_PATTERNS.jobs, KEY_PATTERNS.cache],
    });
  }

  /** The dead-letter handler: reads and rewrites job records (to mark a job failed), nothing else. */
  grantJobRecords(grantee: iam.IGrantable): void {
    this.#grant(grantee, { read: [KEY_PATTERNS.jobs], write: [KEY_PATTERNS.jobs] });
  }

  // Exact actions rather than the s3:GetObject* / s3:PutObject* groups of Bucket.grantRead/grantPut: Graft
  // never reads ACLs, tags or old versions, nor sets retention. ListBucket stays: without it a missing key
  // answers 403 instead of 404, and `find` could not tell "absent" from "forbidden".
  #grant(grantee: iam.IGrantable, access: { read: string[]; write: string[]; delete?: string[] }): void {
    const objects = (patterns: string[]) => patterns.map((pattern) => this.bucket.arnForObjects(pattern));
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:GetObject'], resourceArns: objects(access.read) });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
      resourceArns: objects(access.write),
    });
    if (access.delete) {
      iam.Grant.addToPrincipal({
        grantee,
        actions: ['s3:DeleteObject'],
        resourceArns: objects(access.delete),
      });
    }
    const principal: unknown = grantee.grantPrincipal;
    if (!Construct.isConstruct(principal)) return;
    const bucketId = Stack.of(this).resolve(
      (this.bucket.node.defaultChild as s3.CfnBucket).logicalId,
    ) as string;
    const patterns = new Set([...access.read, ...access.write, ...(access.delete ?? [])]);
    for (const pattern of patterns) {
      Validations.of(principal).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${pattern}]`,
        reason: `Object access is scoped to the key prefix ${pattern} of the storage layout (README "Storage layout"); names inside it are per task, job or version.`,
      });
    }
  }
}
