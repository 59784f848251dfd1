import path from 'node:path';
import { z } from 'zod';
import { GraftError } from './errors.js';

/** Environment variable names: the only place they are spelled, shared by the runtime and the CDK app. */
export const ENV = {
  port: 'PORT',
  host: 'HOST',
  dataDir: 'GRAFT_DATA_DIR',
  apiKey: 'GRAFT_API_KEY',
  maxUploadBytes: 'GRAFT_MAX_UPLOAD_BYTES',
  logLevel: 'GRAFT_LOG_LEVEL',
  bucket: 'GRAFT_BUCKET',
  queueUrl: 'GRAFT_QUEUE_URL',
  batchJobQueue: 'GRAFT_BATCH_JOB_QUEUE',
  batchJobDefinition: 'GRAFT_BATCH_JOB_DEFINITION',
  jobId: 'GRAFT_JOB_ID',
  apiKeyHash: 'GRAFT_API_KEY_SHA256',
  modelRefreshSeconds: 'GRAFT_MODEL_REFRESH_SECONDS',
  awsEndpoint: 'GRAFT_AWS_ENDPOINT',
  url: 'GRAFT_URL',
  /** Set by AWS Batch: 1 on a job's first attempt. */
  batchJobAttempt: 'AWS_BATCH_JOB_ATTEMPT',
  trainerMaxAttempts: 'GRAFT_TRAINER_MAX_ATTEMPTS',
} as const;

type Env = Record<string, string | undefined>;

const LogLevel = z.enum(['debug', 'info', 'warn', 'error', 'silent']);
const Bytes = z.coerce.number().int().positive();

const LocalConfigSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(8787),
  host: z.string().min(1).default('127.0.0.1'),
  dataDir: z.string().min(1).default('./.graft'),
  apiKey: z.string().min(16, 'an API key must have at least 16 characters').optional(),
  maxUploadBytes: Bytes.default(64 * 1024 * 1024),
  logLevel: LogLevel.default('info'),
});
export type LocalConfig = z.infer<typeof LocalConfigSchema>;

/** Parses the configuration of `npm start` once, failing fast with the variable that is wrong. */
export function loadLocalConfig(env: Env = process.env): LocalConfig {
  const config = parse(LocalConfigSchema, {
    port: env[ENV.port] || undefined,
    host: env[ENV.host] || undefined,
    dataDir: env[ENV.dataDir] || undefined,
    apiKey: env[ENV.apiKey] || undefined,
    maxUploadBytes: env[ENV.maxUploadBytes] || undefined,
    logLevel: env[ENV.logLevel] || undefined,
  });
  return { ...config, dataDir: path.resolve(config.dataDir) };
}

const AwsConfigSchema = z.object({
  bucket: z.string().min(3),
  queueUrl: z.string().url(),
  batchJobQueue: z.string().optional(),
  batchJobDefinition: z.string().optional(),
  apiKeyHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  maxUploadBytes: Bytes.default(6 * 1024 * 1024),
  modelRefreshSeconds: z.coerce.number().min(0).default(30),
  endpoint: z.string().url().optional(),
  logLevel: LogLevel.default('info'),
});
export type AwsConfig = z.infer<typeof AwsConfigSchema>;

/** Parses the configuration of the Lambda functions and the Batch trainer. */
export function loadAwsConfig(env: Env = process.env): AwsConfig {
  return parse(AwsConfigSchema, {
    bucket: env[ENV.bucket],
    queueUrl: env[ENV.queueUrl],
    batchJobQueue: env[ENV.batchJobQueue] || undefined,
    batchJobDefinition: env[ENV.batchJobDefinition] || undefined,
    apiKeyHash: env[ENV.apiKeyHash] || undefined,
    maxUploadBytes: env[ENV.maxUploadBytes] || undefined,
    modelRefreshSeconds: env[ENV.modelRefreshSeconds] || undefined,
    endpoint: env[ENV.awsEndpoint] || undefined,
    logLevel: env[ENV.logLevel] || undefined,
  });
}

function parse<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
  throw new GraftError('INVALID_OPTIONS', `Invalid configuration (${problems}). See README "Configuration".`);
}

export interface CliConfig {
  url: string;
  apiKey: string | undefined;
  dataDir: string;
}

/** The command-line tool's settings: flags win over GRAFT_URL / GRAFT_API_KEY / GRAFT_DATA_DIR. */
export function loadCliConfig(env: Env = process.env): CliConfig {
  return {
    url: env[ENV.url] || 'http://127.0.0.1:8787',
    apiKey: env[ENV.apiKey] || undefined,
    dataDir: path.resolve(env[ENV.dataDir] || './.graft'),
  };
}
