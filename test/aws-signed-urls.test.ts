import { readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { serve } from '@hono/node-server';
import type { LambdaEvent } from 'hono/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiHandler } from '../src/adapters/aws/api-handler.js';
import { type AwsClients, createAwsClients, createAwsDeps } from '../src/adapters/aws/deps.js';
import { createDispatcherHandler } from '../src/adapters/aws/dispatcher-handler.js';
import { S3ObjectStore } from '../src/adapters/aws/s3-object-store.js';
import { S3SignedUrls } from '../src/adapters/aws/s3-signed-urls.js';
import { SqsJobQueue } from '../src/adapters/aws/sqs-job-queue.js';
import { createApp } from '../src/api/app.js';
import { runCli } from '../src/cli/cli.js';
import type { AwsConfig } from '../src/config.js';
import { sha256Hex } from '../src/core/auth.js';
import { ModelCache } from '../src/core/predict.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { runJob } from '../src/core/worker.js';
import {
  functionUrlEvent,
  lambdaContext,
  objectCreatedEvent,
  sqsEvent,
  sqsRecord,
} from './fixtures/aws/events.js';
import { type LocalAws, type SeenRequest, startLocalAws, testAwsConfig } from './fixtures/aws/local-aws.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';

const BUCKET = 'graft-signed-urls';
const ADMIN_KEY = 'graft-signed-urls-admin-key-0123456789';
const INCOMING_KEY = /^tasks\/support\/incoming\/\d{8}t\d{6}z-[0-9a-f]{8}-support-2026\.jsonl$/;

let aws: LocalAws;
let clients: AwsClients;
let config: AwsConfig;
let store: S3ObjectStore;
let queue: SqsJobQueue;
const seen: SeenRequest[] = [];

beforeAll(async () => {
  aws = await startLocalAws({ onRequest: (request) => seen.push(request) });
  clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const created = await clients.sqs.send(new CreateQueueCommand({ QueueName: 'graft-signed-urls-jobs' }));
  config = testAwsConfig(aws, {
    bucket: BUCKET,
    queueUrl: created.QueueUrl ?? '',
    batchJobQueue: 'arn:aws:batch:us-east-1:123456789012:job-queue/graft',
    batchJobDefinition: 'arn:aws:batch:us-east-1:123456789012:job-definition/graft-trainer:1',
    apiKeyHash: sha256Hex(ADMIN_KEY),
    modelRefreshSeconds: 0,
  });
  store = new S3ObjectStore(clients.s3, BUCKET);
  queue = new SqsJobQueue(clients.sqs, config.queueUrl);
});

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await aws?.stop();
});

/** The API Lambda, invoked with Function URL events. */
function lambdaApi() {
  const handler = createApiHandler(config, { clients });
  return async (method: string, route: string, body?: unknown) => {
    const event = functionUrlEvent({
      method,
      path: route,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const response = await handler(event as unknown as LambdaEvent, lambdaContext());
    const text = response.body ?? '';
    return {
      status: response.statusCode,
      headers: (response.headers ?? {}) as Record<string, string>,
      body: text ? JSON.parse(text) : undefined,
    };
  };
}

/** The API Lambda's app, served over HTTP on 127.0.0.1 (for the CLI, which needs a URL). */
async function serveLambdaApp(limits: { maxUploadBytes?: number } = {}) {
  const deps = createAwsDeps(config, { clients });
  const app = createApp({
    ...deps,
    auth: { adminKeySha256: config.apiKeyHash },
    models: new ModelCache(deps),
    signedUrls: new S3SignedUrls(deps.store),
    limits,
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function takeJobMessage(): Promise<string> {
  const [message] = await queue.receive({ waitMs: 2000 });
  if (!message) throw new Error('no job message on the queue');
  await queue.delete(message.receiptHandle);
  return (JSON.parse(message.body) as { jobId: string }).jobId;
}

describe('signed URLs in AWS, over a real S3 protocol server on 127.0.0.1', () => {
  let jobId = '';

  it('a presigned PUT takes a dataset with plain fetch, and the dispatcher ingests it and queues its job', async () => {
    // given a task, and an upload URL from the API
    const api = lambdaApi();
    // (one strategy, no search: the training a later test runs stays short)
    expect((await api('PUT', '/v1/tasks/support', { strategy: 'logistic' })).status).toBe(201);
    const ticket = await api('POST', '/v1/tasks/support/uploads', { file: 'support-2026.jsonl' });
    expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
    expect(ticket.body).toMatchObject({ method: 'PUT', key: expect.stringMatching(INCOMING_KEY) });
    const key: string = ticket.body.key;
    const url = new URL(ticket.body.url);
    expect(`${url.origin}${url.pathname}`).toBe(`${aws.endpoint}/${BUCKET}/${key}`);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(Date.parse(ticket.body.expiresAt) - Date.now()).toBeGreaterThan(890_000);

    // when a client without AWS credentials PUTs the file there
    const put = await fetch(ticket.body.url, {
      method: 'PUT',
      headers: ticket.body.headers,
      body: toJsonl(makeTextDataset()),
    });
    expect(put.status).toBe(200);
    // and S3 -> EventBridge -> SQS hands the Object Created event to the dispatcher
    const dispatch = createDispatcherHandler(config, { clients });
    expect(await dispatch(sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, key))]))).toEqual({
      batchItemFailures: [],
    });

    // then the file is a dataset version, named by its source, and gone from incoming/
    const { body } = await api('GET', '/v1/tasks/support/datasets');
    expect(body.datasets).toMatchObject([{ source: `incoming/${path.basename(key)}`, rows: 36 }]);
    expect(body.rejected).toEqual([]);
    expect(await store.find(key)).toBeUndefined();
    // and its training job waits on the queue for the dispatcher to send it to Batch
    jobId = await takeJobMessage();
    expect((await api('GET', `/v1/jobs/${jobId}`)).body).toMatchObject({ status: 'queued' });
  });

  it('keeps a file that cannot become a dataset under rejected/, without retrying it', async () => {
    // given
    const api = lambdaApi();
    const ticket = await api('POST', '/v1/tasks/support/uploads', { file: 'broken.csv' });
    await fetch(ticket.body.url, { method: 'PUT', body: 'text,label\n"unclosed,a\n' });
    // when
    const dispatch = createDispatcherHandler(config, { clients });
    const result = await dispatch(sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, ticket.body.key))]));
    // then: dropped, not retried; the reason is listed next to the datasets
    expect(result).toEqual({ batchItemFailures: [] });
    const { body } = await api('GET', '/v1/tasks/support/datasets');
    expect(body.rejected).toMatchObject([
      { file: path.basename(ticket.body.key), error: { code: 'INVALID_DATASET' } },
    ]);
    expect(await store.find(ticket.body.key)).toBeUndefined();
  });

  it('refuses unsafe file names and unknown tasks before signing anything', async () => {
    const api = lambdaApi();
    for (const file of ['../x.jsonl', 'a b.csv', 'data.txt', 'noext', `${'a'.repeat(97)}.csv`, '']) {
      const response = await api('POST', '/v1/tasks/support/uploads', { file });
      expect(response.status, file).toBe(400);
      expect(response.body.error.code, file).toMatch(/^INVALID_(NAME|OPTIONS)$/);
    }
    expect((await api('POST', '/v1/tasks/nope/uploads', { file: 'a.csv' })).body.error.code).toBe(
      'TASK_NOT_FOUND',
    );
  });

  it('answers model.onnx with a 302 to a short-lived presigned GET that a plain client follows', async () => {
    // given the job from the upload, trained (as the Batch trainer would) into model v1
    expect(jobId).not.toBe('');
    const trained = await runJob(createAwsDeps(config, { clients }), jobId, { heartbeatMs: 500 });
    expect(trained.status).toBe('succeeded');
    const stored = await store.get(storageKeys.modelFile('support', 'v1'));
    // when
    const api = lambdaApi();
    const response = await api('GET', '/v1/tasks/support/models/v1/model.onnx');
    // then
    expect(response.status).toBe(302);
    expect(response.headers['cache-control']).toBe('no-store');
    const location = new URL(response.headers.location ?? '');
    expect(`${location.origin}${location.pathname}`).toBe(
      `${aws.endpoint}/${BUCKET}/${storageKeys.modelFile('support', 'v1')}`,
    );
    expect(location.searchParams.get('X-Amz-Expires')).toBe('300');
    expect(location.searchParams.get('response-content-disposition')).toBe(
      'attachment; filename="support-v1.onnx"',
    );
    expect([...location.searchParams.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
    const download = await fetch(location);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(Buffer.from(stored.body))).toBe(true);
    // and a version without a model is a 404, not a redirect to nothing
    expect((await api('GET', '/v1/tasks/support/models/v9/model.onnx')).body.error.code).toBe(
      'MODEL_NOT_FOUND',
    );
  }, 120_000);

  it('the CLI follows the redirect to S3 without sending the API key there', async () => {
    // given the same app as the Lambda, listening on 127.0.0.1 (another origin than the S3 server)
    const { server, url } = await serveLambdaApp();
    try {
      const dir = await tempDir();
      const out = path.join(dir, 'v1.onnx');
      const err: string[] = [];
      const io = {
        config: { url, apiKey: ADMIN_KEY, dataDir: dir },
        stdout: { write: () => true },
        stderr: { write: (text: string) => err.push(text) },
      };
      seen.length = 0;
      // when
      const code = await runCli(['models', 'download', 'support', 'v1', '--out', out], io);
      // then the file arrived from S3, and the request S3 got carried the signature, not the API key
      expect(code, err.join('')).toBe(0);
      const stored = await store.get(storageKeys.modelFile('support', 'v1'));
      expect((await readFile(out)).equals(Buffer.from(stored.body))).toBe(true);
      const fromCli = seen.filter((r) => r.method === 'GET' && r.url.includes('X-Amz-Signature='));
      expect(fromCli).toHaveLength(1);
      expect(fromCli[0]?.url).toContain('/models/v1/model.onnx');
      expect(fromCli[0]?.headers.authorization).toBeUndefined();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('graft upload --direct: 413 through the API says so; the signed URL takes the file and the CLI waits for its ingestion', async () => {
    // given the Lambda's app with a small request limit, listening on 127.0.0.1
    const { server, url } = await serveLambdaApp({ maxUploadBytes: 1000 });
    const dir = await tempDir();
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      config: { url, apiKey: ADMIN_KEY, dataDir: dir },
      stdout: { write: (text: string) => out.push(text) },
      stderr: { write: (text: string) => err.push(text) },
      pollMs: 50,
    };
    // S3 -> EventBridge -> SQS -> dispatcher, run here for every file that lands in the drop zone
    const dispatch = createDispatcherHandler(config, { clients });
    const dispatched = new Set<string>();
    const pump = setInterval(async () => {
      for (const key of await store.list('tasks/direct/incoming/')) {
        if (dispatched.has(key)) continue;
        dispatched.add(key);
        await dispatch(sqsEvent([sqsRecord(objectCreatedEvent(BUCKET, key))]));
      }
    }, 50);
    try {
      expect(await runCli(['tasks', 'create', 'direct', '--strategy', 'logistic'], io)).toBe(0);
      const file = path.join(dir, 'big data (2026).jsonl');
      await writeFile(file, toJsonl(makeTextDataset()));
      // when the file goes through the API
      expect(await runCli(['upload', 'direct', file], io)).toBe(1);
      // then the error says what to do
      expect(err.join('')).toMatch(/413 .*graft upload --direct takes bigger files/);
      // when it goes to a signed URL
      err.length = 0;
      out.length = 0;
      expect(await runCli(['upload', 'direct', file, '--direct'], io), err.join('')).toBe(0);
      // then the CLI waited for the dispatcher's ingestion, and names the dataset and its queued job
      expect(out.join('')).toMatch(/^dataset ds-[0-9a-f]{16}: 36 rows, job job-[a-z0-9-]+ queued\n$/);
      expect([...dispatched][0]).toMatch(/^tasks\/direct\/incoming\/.*-big-data--2026-\.jsonl$/);
      await takeJobMessage();
      // and a file that cannot be a dataset comes back as the reason it was rejected
      const broken = path.join(dir, 'broken.csv');
      await writeFile(broken, 'no,header,here\n1,2,3\n');
      err.length = 0;
      expect(await runCli(['upload', 'direct', broken, '--direct'], io)).toBe(1);
      expect(err.join('')).toMatch(/the upload was rejected: [A-Z_]+: /);
    } finally {
      clearInterval(pump);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
