import type { SignedUrl, SignedUrls, SignOptions } from '../../ports/signed-urls.js';
import type { S3ObjectStore } from './s3-object-store.js';

/**
 * Signed URLs straight to the bucket: an upload lands under `tasks/{task}/incoming/`, where the EventBridge rule
 * sends it through the dispatcher; a download skips the Function URL's response limit. Both are SigV4 presigned
 * with the function's role, so they also stop working when that role's session ends (hours, not days).
 */
export class S3SignedUrls implements SignedUrls {
  readonly #store: S3ObjectStore;

  constructor(store: S3ObjectStore) {
    this.#store = store;
  }

  async uploadUrl(key: string, { expiresInSeconds }: SignOptions): Promise<SignedUrl> {
    const { method, url, expiresAt } = await this.#store.presignUpload(key, expiresInSeconds);
    return { method, url, expiresAt };
  }

  async downloadUrl(
    key: string,
    { expiresInSeconds, fileName }: SignOptions & { fileName?: string },
  ): Promise<SignedUrl> {
    return this.#store.presignDownload(key, expiresInSeconds, { fileName });
  }
}
