import { randomBytes } from 'node:crypto';
import { GraftError } from '../errors.js';
import type { SignedUrl, SignedUrls } from '../ports/signed-urls.js';
import { type IngestResult, ingestIncoming, parseIncomingKey } from './datasets.js';
import { type CoreDeps, nowIso } from './deps.js';
import { getCard } from './models.js';
import { storageKeys } from './storage-keys.js';
import { getTask } from './tasks.js';

/** The core's dependencies plus the home's signed URLs (S3 presigned in AWS, HMAC-signed locally). */
export interface TransferDeps extends CoreDeps {
  signedUrls?: SignedUrls;
}

/** How long an upload URL may be used; the upload must start before then. */
export const UPLOAD_URL_SECONDS = 900;
/** How long a model download URL may be used: it is followed at once by the client that asked for it. */
export const DOWNLOAD_URL_SECONDS = 300;

const UPLOAD_FILE = /^[A-Za-z0-9._-]{1,100}$/;
const UPLOAD_EXTENSION = /\.(jsonl|ndjson|csv)$/i;

/** Returns `file` when it is a safe upload file name with a dataset extension; else INVALID_NAME. */
export function checkUploadFileName(file: string): string {
  if (!UPLOAD_FILE.test(file) || !UPLOAD_EXTENSION.test(file)) {
    const shown = JSON.stringify(file.length > 80 ? `${file.slice(0, 80)}…` : file);
    throw new GraftError(
      'INVALID_NAME',
      `Invalid upload file name ${shown}: use 1-100 letters, digits, '.', '_' or '-', ending in .jsonl, .ndjson or .csv (for example "support-2026-01.jsonl").`,
    );
  }
  return file;
}

/** Where to send a dataset file, and how. */
export interface UploadTicket extends SignedUrl {
  method: 'PUT';
  /** The object the upload creates: `tasks/{task}/incoming/{unique prefix}-{file}`. */
  key: string;
}

/**
 * Signs an upload of one dataset file into the task's drop zone. The key gets a unique prefix, so two uploads of
 * `data.jsonl` never overwrite each other; once stored, the file becomes a dataset version (source
 * `incoming/{prefix}-{file}`) and queues a job, or lands in `rejected/` with the reason.
 */
export async function createUploadUrl(
  deps: TransferDeps,
  taskName: string,
  file: string,
  { origin }: { origin?: string } = {},
): Promise<UploadTicket> {
  const signedUrls = requireSignedUrls(deps);
  checkUploadFileName(file);
  const task = await getTask(deps, taskName);
  const key = `${storageKeys.incomingPrefix(task.name)}${uniquePrefix(deps)}-${file}`;
  const signed = await signedUrls.uploadUrl(key, { expiresInSeconds: UPLOAD_URL_SECONDS, origin });
  return { ...signed, method: 'PUT', key };
}

/**
 * The incoming key an upload token grants (local home only), checked before any of the body is read. Throws
 * UPLOAD_URL_INVALID / UPLOAD_URL_EXPIRED (403), or NOT_FOUND where uploads go straight to S3.
 */
export function verifyUploadToken(deps: TransferDeps, token: string): string {
  if (!deps.signedUrls?.verifyUploadToken) {
    throw new GraftError(
      'NOT_FOUND',
      'This deployment takes uploads at the URL that POST /v1/tasks/{task}/uploads returns, not here.',
    );
  }
  const { key } = deps.signedUrls.verifyUploadToken(token);
  if (!parseIncomingKey(key)) {
    throw new GraftError('UPLOAD_URL_INVALID', 'The upload URL does not grant an upload to a drop zone.');
  }
  return key;
}

/**
 * Stores an upload at its incoming key and ingests it right away: locally the server is the dispatcher. A file
 * that cannot become a dataset is moved to `rejected/` and its 4xx is thrown.
 */
export async function receiveUpload(deps: CoreDeps, key: string, body: Uint8Array): Promise<IngestResult> {
  await deps.store.put(key, body);
  return ingestIncoming(deps, key);
}

/**
 * A short-lived URL to the model file in storage, where the home has one (S3: a Lambda response cannot carry a
 * model of more than about 5 MB); undefined where the API streams the file itself. MODEL_NOT_FOUND when absent.
 */
export async function modelDownloadUrl(
  deps: TransferDeps,
  task: string,
  version: string,
): Promise<SignedUrl | undefined> {
  if (!deps.signedUrls?.downloadUrl) return undefined;
  // The file is written before its card: a card means the file is complete.
  await getCard(deps, task, version);
  return deps.signedUrls.downloadUrl(storageKeys.modelFile(task, version), {
    expiresInSeconds: DOWNLOAD_URL_SECONDS,
    fileName: `${task}-${version}.onnx`,
  });
}

function requireSignedUrls(deps: TransferDeps): SignedUrls {
  if (!deps.signedUrls) {
    throw new GraftError(
      'NOT_FOUND',
      'This deployment offers no direct uploads: POST the file to /v1/tasks/{task}/datasets instead.',
    );
  }
  return deps.signedUrls;
}

// `20260112t100000z-1a2b3c4d`: sorts by time, and two uploads in the same second still differ.
function uniquePrefix(deps: CoreDeps): string {
  const stamp = nowIso(deps)
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'z')
    .toLowerCase();
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}
