// The API Lambda (Function URL): the Hono app over S3 and SQS.
import { createApiHandler } from '../../src/adapters/aws/api-handler.js';
import { loadAwsConfig } from '../../src/config.js';

export const handler = createApiHandler(loadAwsConfig());
