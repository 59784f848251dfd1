import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { GraftError } from '../../errors.js';
import type { ObjectStore, PutOptions, StoredObject } from '../../ports/object-store.js';
import { describeAwsFailure } from './aws-errors.js';

/** S3 refuses multipart parts below 5 MiB (except the last) and uploads of more than 10,000 parts. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

export interface S3ObjectStoreOptions {
  /** Prepended to every key, e.g. `graft/` to share a bucket. @default '' */
  prefix?: string;
  /** Bodies of at least this many bytes go up as a multipart upload. @default 16 MiB */
  multipartThresholdBytes?: number;
  /** Size of each multipart part; at least 5 MiB. @default 8 MiB */
  partBytes?: number;
  /** Parts uploaded at the same time. @default 4 */
  partConcurrency?: number;
  /**
   * Client used only to sign upload URLs. Give one built with `requestChecksumCalculation: 'WHEN_REQUIRED'`:
   * otherwise the SDK signs the CRC32 of an empty body into the URL and every real upload is rejected.
   * @default the main client
   */
  presignClient?: S3Client;
}

/** Something that can be uploaded: a whole body, or a stream of chunks (a Node `Readable` is one). */
export type UploadBody = Uint8Array | string | AsyncIterable<Uint8Array | string>;

/**
 * The object store on Amazon S3. ETags are S3's own (quoted) values: pass them back unchanged as `ifMatch`.
 * Conditional writes use S3's `If-Match` / `If-None-Match: *`; a lost race is PRECONDITION_FAILED.
 */
export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #presignClient: S3Client;
  readonly #multipartThreshold: number;
  readonly #partBytes: number;
  readonly #partConcurrency: number;

  constructor(
    client: S3Client,
    bucket: string,
    {
      prefix = '',
      multipartThresholdBytes = 16 * 1024 * 1024,
      partBytes = 8 * 1024 * 1024,
      partConcurrency = 4,
      presignClient = client,
    }: S3ObjectStoreOptions = {},
  ) {
    if (partBytes < MIN_PART_BYTES) {
      throw new GraftError('INVALID_OPTIONS', `partBytes is ${partBytes}; S3 needs parts of at least 5 MiB.`);
    }
    if (multipartThresholdBytes < partBytes) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `multipartThresholdBytes (${multipartThresholdBytes}) must be at least partBytes (${partBytes}).`,
      );
    }
    this.#client = client;
    this.#presignClient = presignClient;
    this.bucket = bucket;
    this.prefix = prefix;
    this.#multipartThreshold = multipartThresholdBytes;
    this.#partBytes = partBytes;
    this.#partConcurrency = Math.max(1, partConcurrency);
  }

  async get(key: string): Promise<StoredObject> {
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
      if (!out.Body) throw new Error('S3 answered GetObject without a body');
      const body = await out.Body.transformToByteArray();
      return { body, etag: out.ETag ?? '' };
    } catch (err) {
      throw this.#error(err, 'read', key);
    }
  }

  async find(key: string): Promise<StoredObject | undefined> {
    try {
      return await this.get(key);
    } catch (err) {
      if (err instanceof GraftError && err.code === 'OBJECT_NOT_FOUND') return undefined;
      throw err;
    }
  }

  /**
   * Streams an object without holding it in memory (datasets, ONNX files). Throws OBJECT_NOT_FOUND when absent.
   */
  async openRead(key: string): Promise<{ stream: AsyncIterable<Uint8Array>; etag: string; size: number }> {
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
      if (!out.Body) throw new Error('S3 answered GetObject without a body');
      return {
        stream: out.Body as unknown as AsyncIterable<Uint8Array>,
        etag: out.ETag ?? '',
        size: out.ContentLength ?? 0,
      };
    } catch (err) {
      throw this.#error(err, 'read', key);
    }
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (bytes.byteLength >= this.#multipartThreshold) return this.upload(key, bytes, options);
    return this.#putOnce(key, bytes, options);
  }

  /**
   * Uploads a body of any size: small bodies in one PUT, large ones (or streams that grow past the threshold)
   * as a multipart upload that becomes visible atomically on completion and is aborted on failure. Conditions
   * in `options` apply to the final write.
   */
  async upload(key: string, body: UploadBody, options: PutOptions = {}): Promise<{ etag: string }> {
    const chunks = chunked(body, this.#partBytes);
    const head: Uint8Array[] = [];
    let headBytes = 0;
    for (;;) {
      if (headBytes >= this.#multipartThreshold) return this.#multipart(key, prepend(head, chunks), options);
      const next = await chunks.next();
      if (next.done) return this.#putOnce(key, Buffer.concat(head), options);
      head.push(next.value);
      headBytes += next.value.byteLength;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
    } catch (err) {
      const failure = describeAwsFailure(err);
      if (failure.name === 'NoSuchKey' || failure.status === 404) return;
      throw this.#error(err, 'delete', key);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.#key(prefix),
            ContinuationToken: token,
          }),
        );
        for (const item of page.Contents ?? []) {
          if (item.Key?.startsWith(this.prefix)) keys.push(item.Key.slice(this.prefix.length));
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.#error(err, 'list', prefix);
    }
    return keys;
  }

  /**
   * A URL that lets a client without AWS credentials PUT one object at `key` (datasets larger than Lambda's
   * 6 MB payload limit go straight to S3). The client must send the same `Content-Type` when one is given.
   */
  async presignUpload(
    key: string,
    expiresInSeconds: number,
    { contentType }: { contentType?: string } = {},
  ): Promise<{ url: string; method: 'PUT'; headers: Record<string, string>; expiresAt: string }> {
    checkExpiry(expiresInSeconds);
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: this.#key(key),
      ContentType: contentType,
    });
    const url = await getSignedUrl(this.#presignClient, command, { expiresIn: expiresInSeconds });
    return {
      url,
      method: 'PUT',
      headers: contentType ? { 'content-type': contentType } : {},
      expiresAt: new Date(Date.now() + expiresInSeconds * 1000).toISOString(),
    };
  }

  /**
   * A URL that lets a client without AWS credentials GET the object at `key` (model files larger than a Lambda
   * response can carry). With `fileName`, S3 answers with `Content-Disposition: attachment; filename=...`.
   */
  async presignDownload(
    key: string,
    expiresInSeconds: number,
    { fileName }: { fileName?: string } = {},
  ): Promise<{ url: string; method: 'GET'; expiresAt: string }> {
    checkExpiry(expiresInSeconds);
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.#key(key),
      ResponseContentDisposition: fileName
        ? `attachment; filename="${fileName.replace(/["\\]/g, '_')}"`
        : undefined,
    });
    const url = await getSignedUrl(this.#presignClient, command, { expiresIn: expiresInSeconds });
    return { url, method: 'GET', expiresAt: new Date(Date.now() + expiresInSeconds * 1000).toISOString() };
  }

  async #putOnce(key: string, body: Uint8Array, options: PutOptions): Promise<{ etag: string }> {
    try {
      const out = await this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.#key(key),
          Body: body,
          ContentType: options.contentType,
          IfMatch: options.ifMatch,
          IfNoneMatch: options.ifNoneMatch,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      throw this.#error(err, 'write', key, options);
    }
  }

  async #multipart(
    key: string,
    parts: AsyncIterable<Uint8Array>,
    options: PutOptions,
  ): Promise<{ etag: string }> {
    const Key = this.#key(key);
    let uploadId: string | undefined;
    try {
      const created = await this.#client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key,
          ContentType: options.contentType,
          ChecksumAlgorithm: 'CRC32',
        }),
      );
      uploadId = created.UploadId;
      if (!uploadId) throw new Error('S3 answered CreateMultipartUpload without an UploadId');
      const completed = await this.#uploadParts(Key, uploadId, parts);
      const out = await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key,
          UploadId: uploadId,
          MultipartUpload: { Parts: completed },
          IfMatch: options.ifMatch,
          IfNoneMatch: options.ifNoneMatch,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      if (uploadId) {
        // Best effort: an upload left open costs storage until the bucket's lifecycle rule aborts it.
        await this.#client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId }))
          .catch(() => undefined);
      }
      throw this.#error(err, 'write', key, options);
    }
  }

  async #uploadParts(
    Key: string,
    UploadId: string,
    parts: AsyncIterable<Uint8Array>,
  ): Promise<CompletedPart[]> {
    const completed: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let PartNumber = 0;
    for await (const body of parts) {
      PartNumber += 1;
      if (PartNumber > MAX_PARTS) {
        throw new GraftError('PAYLOAD_TOO_LARGE', `Upload of ${Key} needs more than ${MAX_PARTS} parts.`);
      }
      const number = PartNumber;
      const task = this.#client
        .send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key,
            UploadId,
            PartNumber: number,
            Body: body,
            ChecksumAlgorithm: 'CRC32',
          }),
        )
        .then((out) => {
          completed.push({ PartNumber: number, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32 });
        })
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
      if (inFlight.size >= this.#partConcurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    return completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
  }

  #key(key: string): string {
    return `${this.prefix}${key}`;
  }

  #error(err: unknown, action: string, key: string, options: PutOptions = {}): GraftError {
    if (err instanceof GraftError) return err;
    const failure = describeAwsFailure(err);
    const where = `s3://${this.bucket}/${this.#key(key)}`;
    const notFound =
      failure.name === 'NoSuchKey' || (failure.status === 404 && failure.name !== 'NoSuchBucket');
    if (notFound && options.ifMatch !== undefined) {
      // S3 answers If-Match on a missing key with 404; the port calls that a failed precondition.
      return new GraftError(
        'PRECONDITION_FAILED',
        `No object at ${where} to match ETag ${options.ifMatch}.`,
        {
          cause: err,
          details: { key },
        },
      );
    }
    if (notFound) {
      return new GraftError('OBJECT_NOT_FOUND', `No object at ${where}.`, { cause: err, details: { key } });
    }
    if (
      failure.name === 'PreconditionFailed' ||
      failure.name === 'ConditionalRequestConflict' ||
      failure.status === 412 ||
      failure.status === 409
    ) {
      return new GraftError(
        'PRECONDITION_FAILED',
        `The object at ${where} changed since it was read (S3 ${failure.name}); read it again and retry.`,
        { cause: err, details: { key } },
      );
    }
    if (failure.transient) {
      return new GraftError(
        'STORAGE_UNAVAILABLE',
        `S3 could not ${action} ${where} right now (${failure.name}: ${failure.message}); try again shortly.`,
        { cause: err, details: { key } },
      );
    }
    return new GraftError(
      'INTERNAL',
      `S3 refused to ${action} ${where} (${failure.name}: ${failure.message}); check the bucket name and the role's permissions.`,
      { cause: err, details: { key } },
    );
  }
}

// SigV4 presigned URLs live at most 7 days (and no longer than the credentials that signed them).
function checkExpiry(expiresInSeconds: number): void {
  if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > 604_800) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `expiresInSeconds is ${expiresInSeconds}; use a whole number of seconds from 1 to 604800 (7 days).`,
    );
  }
}

/** Regroups a body or a stream into pieces of exactly `size` bytes (the last may be shorter). */
async function* chunked(body: UploadBody, size: number): AsyncGenerator<Uint8Array> {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (bytes.byteLength === 0) return;
    for (let at = 0; at < bytes.byteLength; at += size) yield bytes.subarray(at, at + size);
    return;
  }
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const piece of body) {
    let chunk = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
    while (pendingBytes + chunk.byteLength >= size) {
      const take = size - pendingBytes;
      pending.push(chunk.subarray(0, take));
      yield Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      chunk = chunk.subarray(take);
    }
    if (chunk.byteLength > 0) {
      // Copy: a stream may reuse the buffer it handed us.
      pending.push(Uint8Array.prototype.slice.call(chunk));
      pendingBytes += chunk.byteLength;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

async function* prepend(first: Uint8Array[], rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* first;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}
