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
  maxIncomingBytes: 'GRAFT_MAX_INCOMING_BYTES',
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
  /** Set by AWS Batch: the Batch job's id. */
  batchJobId: 'AWS_BATCH_JOB_ID',
  trainerMaxAttempts: 'GRAFT_TRAINER_MAX_ATTEMPTS',
  hfEndpoint: 'HF_ENDPOINT',
  hfOffline: 'HF_HUB_OFFLINE',
  hfToken: 'HF_TOKEN',
  hubCacheDir: 'GRAFT_HF_CACHE_DIR',
} as const;

type Env = Record<string, string | undefined>;

const LogLevel = z.enum(['debug', 'info', 'warn', 'error', 'silent']);
const Bytes = z.coerce.number().int().positive();

const Flag = z.enum(['1', 'true', '0', 'false', '']).transform((v) => v === '1' || v === 'true');

/** Where text backbones are downloaded from (the Hugging Face Hub or a mirror) and cached. */
const HubSchema = z.object({
  endpoint: z.string().url().optional(),
  offline: Flag.default(false),
  token: z.string().optional(),
  cacheDir: z.string().min(1).optional(),
});
export type HubConfig = z.infer<typeof HubSchema>;

const hubFromEnv = (env: Env) => ({
  endpoint: env[ENV.hfEndpoint] || undefined,
  offline: env[ENV.hfOffline] || undefined,
  token: env[ENV.hfToken] || undefined,
  cacheDir: env[ENV.hubCacheDir] || undefined,
});

const LocalConfigSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(8787),
  host: z.string().min(1).default('127.0.0.1'),
  dataDir: z.string().min(1).default('./.graft'),
  apiKey: z.string().min(16, 'an API key must have at least 16 characters').optional(),
  maxUploadBytes: Bytes.default(64 * 1024 * 1024),
  logLevel: LogLevel.default('info'),
  hub: HubSchema,
});
/** The configuration of `npm start`; the Hub cache defaults to `{dataDir}/cache/hub`. */
export type LocalConfig = z.infer<typeof LocalConfigSchema> & { hub: { cacheDir: string } };

/** Parses the configuration of `npm start` once, failing fast with the variable that is wrong. */
export function loadLocalConfig(env: Env = process.env): LocalConfig {
  const config = parse(LocalConfigSchema, {
    port: env[ENV.port] || undefined,
    host: env[ENV.host] || undefined,
    dataDir: env[ENV.dataDir] || undefined,
    apiKey: env[ENV.apiKey] || undefined,
    maxUploadBytes: env[ENV.maxUploadBytes] || undefined,
    logLevel: env[ENV.logLevel] || undefined,
    hub: hubFromEnv(env),
  });
  const dataDir = path.resolve(config.dataDir);
  return {
    ...config,
    dataDir,
    hub: { ...config.hub, cacheDir: config.hub.cacheDir ?? path.join(dataDir, 'cache', 'hub') },
  };
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
  /**
   * The largest file the dispatcher ingests from `incoming/`: parsing takes about 11 times a file's size in
   * memory (measured: a 64 MB JSONL file, 674k rows, peaked 690 MB above the process's start), and the dispatcher
   * has 1,024 MB. A larger file is rejected with the reason, not retried until it reaches the dead-letter queue.
   */
  maxIncomingBytes: Bytes.default(64 * 1024 * 1024),
  modelRefreshSeconds: z.coerce.number().min(0).default(30),
  endpoint: z.string().url().optional(),
  logLevel: LogLevel.default('info'),
  hub: HubSchema.optional(),
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
    maxIncomingBytes: env[ENV.maxIncomingBytes] || undefined,
    modelRefreshSeconds: env[ENV.modelRefreshSeconds] || undefined,
    endpoint: env[ENV.awsEndpoint] || undefined,
    logLevel: env[ENV.logLevel] || undefined,
    // Lambda and Batch may write only under /tmp.
    hub: { ...hubFromEnv(env), cacheDir: env[ENV.hubCacheDir] || '/tmp/graft-hub' },
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
