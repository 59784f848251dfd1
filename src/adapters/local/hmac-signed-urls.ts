import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { GraftError } from '../../errors.js';
import type { SignedUrl, SignedUrls, SignOptions } from '../../ports/signed-urls.js';
import { readOrCreateSecretFile } from './file-lock.js';

/** Where the local server takes signed uploads: `PUT {origin}/v1/uploads/{token}`. */
export const LOCAL_UPLOAD_PATH = '/v1/uploads/';

// Signatures of upload tokens are over this prefix and the payload: a MAC made for anything else never verifies.
const CONTEXT = 'graft-upload-v1\n';
const MAC_BYTES = 32;

export interface HmacSignedUrlsOptions {
  /** Used when a request does not say which origin the client reached the API at. */
  baseUrl?: string;
  /** Injectable clock for tests. */
  now?: () => number;
}

/**
 * Upload URLs to the local server itself, signed like S3's: the token in the path is `{payload}.{mac}`, where the
 * payload (base64url) holds the expiry and the object key and the MAC is HMAC-SHA256 with a secret kept in the
 * data directory. Whoever holds the URL may PUT that one key until it expires; nothing else.
 */
export class HmacSignedUrls implements SignedUrls {
  readonly #secret: Buffer;
  readonly #baseUrl: string | undefined;
  readonly #now: () => number;

  constructor(secret: Uint8Array, { baseUrl, now = Date.now }: HmacSignedUrlsOptions = {}) {
    if (secret.byteLength < 32) {
      throw new GraftError('INVALID_OPTIONS', 'The upload signing secret must have at least 32 bytes.');
    }
    this.#secret = Buffer.from(secret);
    this.#baseUrl = baseUrl;
    this.#now = now;
  }

  async uploadUrl(key: string, { expiresInSeconds, origin }: SignOptions): Promise<SignedUrl> {
    if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `expiresInSeconds is ${expiresInSeconds}; use a whole number ≥ 1.`,
      );
    }
    const base = origin ?? this.#baseUrl;
    if (!base) {
      throw new GraftError(
        'INTERNAL',
        'Cannot build an upload URL: neither the request origin nor a base URL is known.',
      );
    }
    const expiresAtMs = (Math.floor(this.#now() / 1000) + expiresInSeconds) * 1000;
    const payload = Buffer.from(`${expiresAtMs / 1000}\n${key}`, 'utf8').toString('base64url');
    const token = `${payload}.${this.#mac(payload).toString('base64url')}`;
    return {
      method: 'PUT',
      url: new URL(`${LOCAL_UPLOAD_PATH}${token}`, base).href,
      expiresAt: new Date(expiresAtMs).toISOString(),
    };
  }

  verifyUploadToken(token: string): { key: string } {
    const invalid = () =>
      new GraftError(
        'UPLOAD_URL_INVALID',
        'The upload URL is not valid (altered or signed with another secret). Ask for a new one with POST /v1/tasks/{task}/uploads.',
      );
    const [payload, mac, ...rest] = token.split('.');
    if (!payload || !mac || rest.length > 0) throw invalid();
    const given = Buffer.from(mac, 'base64url');
    // Compare MACs in constant time; a wrong length is no secret.
    if (given.byteLength !== MAC_BYTES || !timingSafeEqual(given, this.#mac(payload))) throw invalid();
    const text = Buffer.from(payload, 'base64url').toString('utf8');
    const newline = text.indexOf('\n');
    const expiresAt = Number(text.slice(0, newline));
    const key = text.slice(newline + 1);
    if (newline < 1 || !Number.isInteger(expiresAt) || key === '') throw invalid();
    if (this.#now() >= expiresAt * 1000) {
      throw new GraftError(
        'UPLOAD_URL_EXPIRED',
        `The upload URL expired at ${new Date(expiresAt * 1000).toISOString()}. Ask for a new one with POST /v1/tasks/{task}/uploads.`,
      );
    }
    return { key };
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#secret).update(CONTEXT).update(payload).digest();
  }
}

/** The upload signing secret kept in the data directory (mode 0600), created on first start like the admin key. */
export async function uploadSecretFromDataDir(dataDir: string): Promise<Buffer> {
  const { value } = await readOrCreateSecretFile(path.join(dataDir, 'upload-secret'), () =>
    randomBytes(32).toString('base64url'),
  );
  return Buffer.from(value, 'base64url');
}
