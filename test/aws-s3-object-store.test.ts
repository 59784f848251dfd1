import { type AddressInfo, createServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { CreateBucketCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsClients } from '../src/adapters/aws/deps.js';
import { MIN_PART_BYTES, S3ObjectStore } from '../src/adapters/aws/s3-object-store.js';
import { GraftError } from '../src/errors.js';
import { type LocalAws, startLocalAws, unreachableAws } from './fixtures/aws/local-aws.js';

let aws: LocalAws;
let client: S3Client;
let bucketCount = 0;

/** A fresh bucket per test, so tests do not see each other's keys; `on` is the client the store uses. */
async function freshStore(options: ConstructorParameters<typeof S3ObjectStore>[2] = {}, on = client) {
  bucketCount += 1;
  const bucket = `graft-test-${bucketCount}`;
  await on.send(new CreateBucketCommand({ Bucket: bucket }));
  return new S3ObjectStore(on, bucket, options);
}

/** Counts the SDK commands a client sends (to prove pagination and multipart really happened). */
function countCommands(target: S3Client) {
  const counts = new Map<string, number>();
  target.middlewareStack.add(
    (next, context) => (args) => {
      const name = context.commandName ?? 'unknown';
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: `count-${Math.random()}` },
  );
  return (name: string) => counts.get(name) ?? 0;
}

const bytes = (n: number, seed = 1) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
};

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    return err instanceof GraftError ? err.code : `not a GraftError: ${String(err)}`;
  }
}

beforeAll(async () => {
  aws = await startLocalAws();
  client = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials }).s3;
});

afterAll(async () => {
  client?.destroy();
  await aws?.stop();
});

describe('S3ObjectStore against a real S3 protocol server', () => {
  it('puts and gets bytes and strings, with the ETag S3 reports', async () => {
    // given
    const store = await freshStore();
    // when
    const written = await store.put('tasks/a/task.json', '{"name":"a"}', { contentType: 'application/json' });
    const binary = await store.put('tasks/a/models/v1/model.onnx', bytes(1000));
    // then
    const read = await store.get('tasks/a/task.json');
    expect(Buffer.from(read.body).toString('utf8')).toBe('{"name":"a"}');
    expect(read.etag).toBe(written.etag);
    expect(written.etag).toMatch(/^".+"$/);
    expect(Buffer.from((await store.get('tasks/a/models/v1/model.onnx')).body)).toEqual(
      Buffer.from(bytes(1000)),
    );
    expect(binary.etag).not.toBe(written.etag);
  });

  it('says OBJECT_NOT_FOUND for get, undefined for find, and deletes idempotently', async () => {
    // given
    const store = await freshStore();
    await store.put('jobs/job-1.json', '{}');
    // when
    await store.delete('jobs/job-1.json');
    await store.delete('jobs/job-1.json');
    // then
    expect(await code(store.get('jobs/job-1.json'))).toBe('OBJECT_NOT_FOUND');
    expect(await store.find('jobs/job-1.json')).toBeUndefined();
  });

  it('lists every key under a prefix across pages (1,050 keys, S3 pages hold 1,000)', async () => {
    // given
    const counting = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials }).s3;
    const commands = countCommands(counting);
    const store = await freshStore({ prefix: 'graft/' }, counting);
    const keys = Array.from({ length: 1050 }, (_, i) => `jobs/job-${String(i).padStart(5, '0')}.json`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key) => store.put(key, '{}')));
    }
    await store.put('tasks/other/task.json', '{}');
    await counting.send(
      new PutObjectCommand({ Bucket: store.bucket, Key: 'outside-the-prefix.json', Body: '{}' }),
    );
    // when
    const listed = await store.list('jobs/');
    // then
    expect(listed).toEqual(keys);
    expect(commands('ListObjectsV2Command')).toBe(2);
    expect(await store.list('')).toHaveLength(1051);
    counting.destroy();
  });

  it('uploads large bodies in parts and reads them back whole', async () => {
    // given
    const counting = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials }).s3;
    const commands = countCommands(counting);
    const store = await freshStore(
      { multipartThresholdBytes: MIN_PART_BYTES, partBytes: MIN_PART_BYTES },
      counting,
    );
    const body = bytes(2 * MIN_PART_BYTES + 12345, 7);
    // when
    const { etag } = await store.put('tasks/a/datasets/ds-1/data.jsonl', body);
    // then
    expect(commands('CreateMultipartUploadCommand')).toBe(1);
    expect(commands('UploadPartCommand')).toBe(3);
    expect(commands('CompleteMultipartUploadCommand')).toBe(1);
    const read = await store.get('tasks/a/datasets/ds-1/data.jsonl');
    expect(read.body.byteLength).toBe(body.byteLength);
    expect(Buffer.compare(Buffer.from(read.body), Buffer.from(body))).toBe(0);
    expect(read.etag).toBe(etag);
    counting.destroy();
  });

  it('streams an upload of unknown length: multipart past the threshold, one PUT below it', async () => {
    // given
    const counting = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials }).s3;
    const commands = countCommands(counting);
    const store = await freshStore(
      { multipartThresholdBytes: MIN_PART_BYTES, partBytes: MIN_PART_BYTES },
      counting,
    );
    const whole = bytes(MIN_PART_BYTES + 300_000, 3);
    const pieces = Array.from({ length: Math.ceil(whole.length / 65_536) }, (_, i) =>
      Buffer.from(whole.subarray(i * 65_536, (i + 1) * 65_536)),
    );
    // when
    await store.upload('big.bin', Readable.from(pieces));
    await store.upload('small.bin', Readable.from([Buffer.from('a'), Buffer.from('b')]));
    // then
    expect(commands('UploadPartCommand')).toBe(2);
    expect(commands('PutObjectCommand')).toBe(1);
    const opened = await store.openRead('big.bin');
    const chunks: Uint8Array[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk);
    expect(Buffer.compare(Buffer.concat(chunks), Buffer.from(whole))).toBe(0);
    expect(Buffer.from((await store.get('small.bin')).body).toString()).toBe('ab');
    counting.destroy();
  });

  it('aborts a failed multipart upload and leaves no object behind', async () => {
    // given: the second part fails with a 500
    const failing = createAwsClients(
      { endpoint: aws.endpoint },
      { credentials: aws.credentials, maxAttempts: 1 },
    ).s3;
    const commands = countCommands(failing);
    failing.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { PartNumber?: number };
        if (context.commandName === 'UploadPartCommand' && input.PartNumber === 2) {
          throw new S3ServiceException({
            name: 'InternalError',
            $fault: 'server',
            $metadata: { httpStatusCode: 500 },
          });
        }
        return next(args);
      },
      { step: 'initialize', name: 'fail-part-2' },
    );
    const store = await freshStore(
      { multipartThresholdBytes: MIN_PART_BYTES, partBytes: MIN_PART_BYTES, partConcurrency: 1 },
      failing,
    );
    // when
    const outcome = await code(store.put('tasks/a/models/v2/model.onnx', bytes(3 * MIN_PART_BYTES)));
    // then
    expect(outcome).toBe('STORAGE_UNAVAILABLE');
    expect(commands('AbortMultipartUploadCommand')).toBe(1);
    expect(commands('CompleteMultipartUploadCommand')).toBe(0);
    expect(await store.find('tasks/a/models/v2/model.onnx')).toBeUndefined();
    failing.destroy();
  });

  describe('conditional writes', () => {
    it('If-None-Match: * creates once, then refuses', async () => {
      // given
      const store = await freshStore();
      await store.put('tasks/a/models/v1/card.json', '{"v":1}', { ifNoneMatch: '*' });
      // when
      const again = await code(store.put('tasks/a/models/v1/card.json', '{"v":2}', { ifNoneMatch: '*' }));
      // then
      expect(again).toBe('PRECONDITION_FAILED');
      expect(Buffer.from((await store.get('tasks/a/models/v1/card.json')).body).toString()).toBe('{"v":1}');
    });

    it('If-Match writes over the ETag it read, refuses a stale ETag and a missing object', async () => {
      // given
      const store = await freshStore();
      const first = await store.put('tasks/a/current.json', '{"version":"v1"}');
      const second = await store.put('tasks/a/current.json', '{"version":"v2"}', { ifMatch: first.etag });
      // when
      const stale = await code(
        store.put('tasks/a/current.json', '{"version":"v3"}', { ifMatch: first.etag }),
      );
      const missing = await code(store.put('tasks/b/current.json', '{}', { ifMatch: first.etag }));
      // then
      expect(stale).toBe('PRECONDITION_FAILED');
      expect(missing).toBe('PRECONDITION_FAILED');
      const now = await store.get('tasks/a/current.json');
      expect(now.etag).toBe(second.etag);
      expect(Buffer.from(now.body).toString()).toBe('{"version":"v2"}');
    });

    it('two promotes at once: one wins, the other gets PRECONDITION_FAILED (20 rounds)', async () => {
      // given
      const store = await freshStore();
      const refusedBefore = aws.refusedConditionalWrites();
      for (let round = 0; round < 20; round++) {
        const { etag } = await store.put('tasks/a/current.json', JSON.stringify({ version: `v${round}` }));
        // when: both promoters read the same ETag and write at the same time
        const results = await Promise.allSettled([
          store.put('tasks/a/current.json', JSON.stringify({ version: 'left', round }), { ifMatch: etag }),
          store.put('tasks/a/current.json', JSON.stringify({ version: 'right', round }), { ifMatch: etag }),
        ]);
        // then
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'PRECONDITION_FAILED' });
        const winner = won[0] as PromiseFulfilledResult<{ etag: string }>;
        expect((await store.get('tasks/a/current.json')).etag).toBe(winner.value.etag);
      }
      expect(aws.refusedConditionalWrites() - refusedBefore).toBe(20);
    });

    it('ten writers creating the same job record: exactly one succeeds', async () => {
      // given
      const store = await freshStore();
      // when
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          store.put('jobs/job-x.json', `{"writer":${i}}`, { ifNoneMatch: '*' }),
        ),
      );
      // then
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(
        results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code),
      ).toEqual(Array(9).fill('PRECONDITION_FAILED'));
    });

    it('needs the fixture: fauxqs 1.9.2 alone ignores If-None-Match on PutObject', async () => {
      // given: a bare fauxqs, without the conditional-write layer of the fixture
      const bare = await startLocalAws({ conditionalWrites: false });
      const bareClient = createAwsClients({ endpoint: bare.endpoint }, { credentials: bare.credentials }).s3;
      await bareClient.send(new CreateBucketCommand({ Bucket: 'bare' }));
      const store = new S3ObjectStore(bareClient, 'bare');
      await store.put('jobs/job-1.json', '{"a":1}', { ifNoneMatch: '*' });
      // when
      const second = await code(store.put('jobs/job-1.json', '{"a":2}', { ifNoneMatch: '*' }));
      // then: if this starts failing, fauxqs learned conditional writes and the fixture's layer can go
      expect(second).toBe('resolved');
      bareClient.destroy();
      await bare.stop();
    });

    it('applies the condition to the completion of a multipart upload', async () => {
      // given
      const store = await freshStore({ multipartThresholdBytes: MIN_PART_BYTES, partBytes: MIN_PART_BYTES });
      await store.put('tasks/a/datasets/ds-1/data.jsonl', 'small');
      // when
      const outcome = await code(
        store.put('tasks/a/datasets/ds-1/data.jsonl', bytes(MIN_PART_BYTES + 1), { ifNoneMatch: '*' }),
      );
      // then
      expect(outcome).toBe('PRECONDITION_FAILED');
      expect(Buffer.from((await store.get('tasks/a/datasets/ds-1/data.jsonl')).body).toString()).toBe(
        'small',
      );
    });
  });

  describe('presigned uploads', () => {
    it('signs a PUT URL without a baked-in checksum that a plain HTTP client can use', async () => {
      // given
      const clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
      const store = await freshStore({ presignClient: clients.s3Presign }, clients.s3);
      // when
      const signed = await store.presignUpload('tasks/a/incoming/big.jsonl', 900, {
        contentType: 'application/x-ndjson',
      });
      const response = await fetch(signed.url, {
        method: signed.method,
        headers: signed.headers,
        body: '{"text":"hi","label":"greeting"}\n',
      });
      // then
      expect(response.status).toBe(200);
      const url = new URL(signed.url);
      expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
      expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect([...url.searchParams.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
      expect(Buffer.from((await store.get('tasks/a/incoming/big.jsonl')).body).toString()).toContain(
        'greeting',
      );
      for (const c of Object.values(clients)) c.destroy();
    });

    it('refuses an expiry S3 would not accept', async () => {
      const store = await freshStore();
      expect(await code(store.presignUpload('x', 0))).toBe('INVALID_OPTIONS');
      expect(await code(store.presignUpload('x', 604_801))).toBe('INVALID_OPTIONS');
    });
  });

  describe('failures', () => {
    it('maps an unreachable endpoint to STORAGE_UNAVAILABLE with the cause kept', async () => {
      // given: nothing listens on the port of a stopped server
      const { clients: unreachable } = await unreachableAws(aws.credentials);
      const store = new S3ObjectStore(unreachable.s3, 'graft-test-1');
      // when
      const err = await store.get('jobs/job-1.json').catch((e: unknown) => e);
      // then
      expect(err).toBeInstanceOf(GraftError);
      expect((err as GraftError).code).toBe('STORAGE_UNAVAILABLE');
      expect((err as GraftError).cause).toBeDefined();
      unreachable.s3.destroy();
    });

    it('fails a call to a server that accepts and never answers with STORAGE_UNAVAILABLE, after its timeouts', async () => {
      // given: a TCP server on 127.0.0.1 that takes connections and never says a word
      const sockets = new Set<Socket>();
      const silent = createServer((socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const { port } = silent.address() as AddressInfo;
      const stalled = createAwsClients(
        { endpoint: `http://127.0.0.1:${port}` },
        { credentials: aws.credentials, maxAttempts: 2, requestTimeoutMs: 300 },
      );
      const store = new S3ObjectStore(stalled.s3, 'graft-test-1');
      try {
        // when
        const started = performance.now();
        const err = await store.get('tasks/t/current.json').catch((e: unknown) => e);
        const elapsedMs = performance.now() - started;
        // then: both attempts timed out, and the caller got the code that maps to 503
        expect((err as GraftError).code).toBe('STORAGE_UNAVAILABLE');
        expect(elapsedMs).toBeGreaterThanOrEqual(2 * 300 - 50);
        expect(elapsedMs).toBeLessThan(10_000);
      } finally {
        stalled.s3.destroy();
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => silent.close(resolve));
      }
    });

    it.each([
      ['ConditionalRequestConflict', 409, 'PRECONDITION_FAILED'],
      ['PreconditionFailed', 412, 'PRECONDITION_FAILED'],
      ['SlowDown', 503, 'STORAGE_UNAVAILABLE'],
      ['InternalError', 500, 'STORAGE_UNAVAILABLE'],
      ['AccessDenied', 403, 'INTERNAL'],
    ])('maps S3 %s (%i) to %s', async (name, status, expected) => {
      // given: a client whose every call fails with that S3 error
      const failing = new S3Client({
        endpoint: aws.endpoint,
        region: 'us-east-1',
        credentials: aws.credentials,
        forcePathStyle: true,
        maxAttempts: 1,
      });
      failing.middlewareStack.add(
        () => async () => {
          throw new S3ServiceException({
            name,
            $fault: status >= 500 ? 'server' : 'client',
            $metadata: { httpStatusCode: status },
          });
        },
        { step: 'initialize', name: 'always-fail' },
      );
      const store = new S3ObjectStore(failing, 'graft-test-1');
      // when / then
      expect(await code(store.put('tasks/a/current.json', '{}', { ifMatch: '"x"' }))).toBe(expected);
      failing.destroy();
    });

    it('refuses parts smaller than S3 allows', () => {
      expect(() => new S3ObjectStore(client, 'b', { partBytes: 1024 })).toThrow(/at least 5 MiB/);
    });
  });
});
