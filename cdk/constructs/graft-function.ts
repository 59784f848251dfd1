import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ENV } from '../../src/config.js';

/** The repository root: entries, package.json and package-lock.json are found from here. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The variables every Graft process in AWS reads its configuration from (AwsConfig): the bucket, the job queue
 * and the log level. A process that never sends to or reads from the job queue gets its URL too: the
 * configuration requires it.
 */
export function awsConfigEnvironment(bucketName: string, queueUrl: string): Record<string, string> {
  return { [ENV.bucket]: bucketName, [ENV.queueUrl]: queueUrl, [ENV.logLevel]: 'info' };
}

/** Lambda architecture name -> the `process.arch` whose onnxruntime-node binaries the asset keeps. */
const ONNX_ARCH: Record<string, string> = { arm64: 'arm64', x86_64: 'x64' };

export interface GraftFunctionProps {
  /** Entry file, relative to the repository root, e.g. `functions/aws/api.ts`. */
  readonly entry: string;
  readonly description: string;
  readonly architecture: lambda.Architecture;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly environment: Record<string, string>;
  /** Ship onnxruntime-node (pruned to the architecture) next to the bundle. */
  readonly onnxRuntime: boolean;
  readonly reservedConcurrentExecutions?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A Graft Lambda function: Node.js 22, one ESM file bundled by esbuild (the AWS SDK included, so the version
 * tested is the version run), and, for functions that run models, onnxruntime-node installed as a real node
 * module with `ONNXRUNTIME_NODE_INSTALL=skip` (no CUDA download) and every other platform's binaries deleted.
 */
export class GraftFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: GraftFunctionProps) {
    super(scope, id);
    const arch = ONNX_ARCH[props.architecture.name];
    if (!arch)
      throw new Error(`Unsupported Lambda architecture ${props.architecture.name}: use arm64 or x86_64.`);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // Its own role, allowed to write to its own log group only (not AWSLambdaBasicExecutionRole's logs:* on *).
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: props.description,
    });
    this.logGroup.grantWrite(role);

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      role,
      entry: path.join(PROJECT_ROOT, props.entry),
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: props.architecture,
      memorySize: props.memorySize,
      timeout: props.timeout,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
      logGroup: this.logGroup,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      bundling: {
        format: nodejs.OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        // Bundled CommonJS code may still call require(); ESM has none, so give it one.
        banner:
          "import { createRequire as __graftCreateRequire } from 'node:module'; const require = __graftCreateRequire(import.meta.url);",
        minify: true,
        sourceMap: true,
        bundleAwsSDK: true,
        externalModules: [],
        nodeModules: props.onnxRuntime ? ['onnxruntime-node'] : [],
        // skip: no CUDA download for onnxruntime-node (its CPU binaries are in the package); prefer_offline: the
        // install takes packages from npm's cache when it has them, so synth works without a network.
        environment: { ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_prefer_offline: 'true' },
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) =>
            props.onnxRuntime
              ? [
                  `node "${inputDir}/cdk/scripts/prune-onnxruntime.mjs" "${outputDir}/node_modules" linux ${arch}`,
                ]
              : [],
        },
      },
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Graft targets nodejs22.x on purpose: the trainer image, CI and the onnxruntime-node build it ships are ' +
        'tested on Node 22; move them together.',
    });
  }
}
