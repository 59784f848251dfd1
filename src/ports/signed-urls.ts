/**
 * A URL that lets a client without an API key move one object directly, until it expires: the way around the
 * Lambda payload limits (6 MB in a request, about as much in a response).
 */
export interface SignedUrl {
  method: 'PUT' | 'GET';
  url: string;
  /** Headers the client must send with the request, when the signature covers some. */
  headers?: Record<string, string>;
  /** ISO time after which the URL is refused. */
  expiresAt: string;
}

export interface SignOptions {
  expiresInSeconds: number;
  /**
   * The origin (`scheme://host[:port]`) the client reached the API at. A home whose upload URLs point back at the
   * API itself (local) builds them on it; S3 ignores it.
   */
  origin?: string;
}

/**
 * Signed transfer URLs: S3 presigned URLs in AWS, HMAC-signed URLs to the local server's own `PUT /v1/uploads/`
 * locally. The signature is the authorisation, as with S3: whoever holds the URL may use it until it expires.
 */
export interface SignedUrls {
  /** A URL to PUT one object at `key`. */
  uploadUrl(key: string, options: SignOptions): Promise<SignedUrl>;
  /**
   * A URL to GET the object at `key` straight from storage. Only homes where the API cannot stream large bodies
   * (Lambda) have it; without it the API streams the object itself.
   */
  downloadUrl?(key: string, options: SignOptions & { fileName?: string }): Promise<SignedUrl>;
  /**
   * Only for homes whose upload URLs point at the API itself (local): the key that `token` (the last path segment
   * of an upload URL) grants a PUT to. Throws UPLOAD_URL_INVALID or UPLOAD_URL_EXPIRED (403).
   */
  verifyUploadToken?(token: string): { key: string };
}
