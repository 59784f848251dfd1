import { handle } from 'hono/aws-lambda';
import { createApp } from '../../api/app.js';
import type { AwsConfig } from '../../config.js';
import { ModelCache } from '../../core/predict.js';
import { type AwsClients, createAwsDeps } from './deps.js';
import { S3SignedUrls } from './s3-signed-urls.js';

/**
 * The API Lambda's handler: the Hono app over the S3 store and SQS queue, for Function URL, API Gateway (v1 and
 * v2) and ALB events. Large datasets and model files move through presigned S3 URLs, past Lambda's 6 MB payload
 * limits. Models stay loaded across warm invocations; `current.json` is re-read at most every
 * `modelRefreshSeconds`, which bounds how long a newly promoted version takes to be served.
 */
export function createApiHandler(config: AwsConfig, options: { clients?: AwsClients } = {}) {
  const deps = createAwsDeps(config, options);
  const app = createApp({
    ...deps,
    auth: { adminKeySha256: config.apiKeyHash },
    models: new ModelCache(deps, { refreshMs: config.modelRefreshSeconds * 1000 }),
    signedUrls: new S3SignedUrls(deps.store),
    limits: { maxUploadBytes: config.maxUploadBytes },
  });
  return handle(app);
}
