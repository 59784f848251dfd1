import { Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Node } from 'constructs';
import type { GraftStackProps } from './graft-stack.js';

/**
 * The deploy-time settings, read from CDK context (`cdk.json` "context", or `-c key=value` on the command line,
 * where every value arrives as a string):
 *
 * | key | values | default |
 * |---|---|---|
 * | `graft:stackName` | stack name | `Graft` |
 * | `graft:architecture` | `arm64` \| `x86_64` (Lambda functions) | `arm64` |
 * | `graft:gpu` | `true` \| `false` (false: CPU training on Fargate) | `true` |
 * | `graft:spot` | `true` \| `false` | `false` |
 * | `graft:maxVcpus` | whole number | `16` |
 * | `graft:trainerMemoryGiB` | whole number (memory of one training job) | `14` |
 * | `graft:jobTimeoutMinutes` | whole number (one training attempt) | `120` |
 * | `graft:apiMemoryMb` | 128-10240 | `2048` |
 * | `graft:apiTimeoutSeconds` | 1-900 | `30` |
 * | `graft:reservedConcurrency` | whole number | none |
 * | `graft:provisionedConcurrency` | whole number | none |
 * | `graft:adminKeySha256` | sha256 hex of a bootstrap admin key | none |
 * | `graft:alarmEmail` | e-mail address | none |
 * | `graft:removalPolicy` | `retain` \| `destroy` (the bucket and its data) | `retain` |
 * | `graft:nag` | `true` \| `false` (run cdk-nag's AwsSolutions checks) | `true` |
 */
export function stackPropsFromContext(node: Node): {
  stackName: string;
  nag: boolean;
  props: GraftStackProps;
} {
  const read = (key: string): unknown => node.tryGetContext(`graft:${key}`);
  const architecture = oneOf(read('architecture'), 'graft:architecture', ['arm64', 'x86_64'] as const);
  const removal = oneOf(read('removalPolicy'), 'graft:removalPolicy', ['retain', 'destroy'] as const);
  const timeoutSeconds = whole(read('apiTimeoutSeconds'), 'graft:apiTimeoutSeconds');
  return {
    stackName: str(read('stackName')) ?? 'Graft',
    nag: bool(read('nag'), 'graft:nag') ?? true,
    props: {
      architecture: architecture === 'x86_64' ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64,
      removalPolicy: removal === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      alarmEmail: str(read('alarmEmail')),
      api: {
        memorySize: whole(read('apiMemoryMb'), 'graft:apiMemoryMb'),
        timeout: timeoutSeconds === undefined ? undefined : Duration.seconds(timeoutSeconds),
        reservedConcurrency: whole(read('reservedConcurrency'), 'graft:reservedConcurrency'),
        provisionedConcurrency: whole(read('provisionedConcurrency'), 'graft:provisionedConcurrency'),
        adminKeySha256: str(read('adminKeySha256')),
      },
      training: {
        gpu: bool(read('gpu'), 'graft:gpu'),
        spot: bool(read('spot'), 'graft:spot'),
        maxVcpus: whole(read('maxVcpus'), 'graft:maxVcpus'),
        trainerMemory: optional(whole(read('trainerMemoryGiB'), 'graft:trainerMemoryGiB'), Size.gibibytes),
        jobTimeout: optional(whole(read('jobTimeoutMinutes'), 'graft:jobTimeoutMinutes'), Duration.minutes),
      },
    },
  };
}

function optional<T>(value: number | undefined, make: (n: number) => T): T | undefined {
  return value === undefined ? undefined : make(value);
}

function str(value: unknown): string | undefined {
  return value === undefined || value === null || value === '' ? undefined : String(value);
}

function bool(value: unknown, key: string): boolean | undefined {
  const text = str(value);
  if (text === undefined) return undefined;
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new Error(`Context ${key} is "${text}": use true or false.`);
}

function whole(value: unknown, key: string): number | undefined {
  const text = str(value);
  if (text === undefined) return undefined;
  const number = Number(text);
  if (!Number.isInteger(number) || number < 0)
    throw new Error(`Context ${key} is "${text}": use a whole number.`);
  return number;
}

function oneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T | undefined {
  const text = str(value);
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) {
    throw new Error(`Context ${key} is "${text}": use one of ${allowed.join(', ')}.`);
  }
  return text as T;
}
