/** The OpenAPI 3.1 description served at GET /openapi.json; a test checks that it lists every route of the app. */

const json = (schema: object) => ({ 'application/json': { schema } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const ok = (description: string, schema: object = { type: 'object' }) => ({
  description,
  content: json(schema),
});
const errors = {
  '400': { $ref: '#/components/responses/Error' },
  '401': { $ref: '#/components/responses/Error' },
  '403': { $ref: '#/components/responses/Error' },
  '404': { $ref: '#/components/responses/Error' },
};
const task = {
  name: 'task',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
};
const version = { name: 'version', in: 'path', required: true, schema: { type: 'string', example: 'v1' } };
const jobId = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const keyId = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Graft API',
    version: '1.0.0',
    description:
      'Upload labelled data, train a task head on a frozen backbone, serve calibrated predictions.',
  },
  security: [{ bearer: [] }],
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'API key with scope admin or predict' },
    },
    responses: { Error: { description: 'An error with a stable code', content: json(ref('Error')) } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string' },
              message: { type: 'string' },
              details: { type: 'object' },
            },
          },
        },
      },
      TaskInput: {
        type: 'object',
        additionalProperties: false,
        properties: {
          backbone: { type: 'string', description: 'hash-ngrams (built in) or a registered backbone' },
          labels: {
            type: 'array',
            items: {
              oneOf: [
                { type: 'string' },
                { type: 'object', properties: { name: { type: 'string' }, description: { type: 'string' } } },
              ],
            },
          },
          strategy: { type: 'string', enum: ['auto', 'zero-shot', 'centroid', 'logistic', 'mlp'] },
          training: {
            type: 'object',
            properties: {
              selfTraining: { description: 'false, or {threshold, maxRounds}' },
              seed: {
                type: 'integer',
                description:
                  "the jobs' seed unless a job names its own (default 42); splits do not depend on it",
              },
              rehearsalPerLabel: { type: 'integer' },
              augment: { description: 'false, or {copies, shift, rotate, noise, flip}' },
            },
          },
          autoTrain: { type: 'boolean', description: 'queue a training job on every upload (default true)' },
          promotion: {
            type: 'object',
            properties: {
              mode: { type: 'string', enum: ['gate', 'always', 'manual'] },
              maxMacroF1Drop: { type: 'number' },
              maxClassF1Drop: { type: 'number' },
            },
          },
        },
      },
      Job: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          task: { type: 'string' },
          status: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] },
          stage: {
            type: 'string',
            enum: ['validating', 'embedding', 'training', 'evaluating', 'exporting', 'publishing'],
          },
          progress: { type: 'number', minimum: 0, maximum: 1 },
          modelVersion: { type: 'string' },
          promoted: { type: 'boolean' },
          metrics: { type: 'object' },
          error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
          events: { type: 'array', items: { type: 'object' } },
        },
      },
      PredictRequest: {
        type: 'object',
        required: ['inputs'],
        properties: {
          inputs: {
            type: 'array',
            items: {
              oneOf: [
                { type: 'string' },
                { type: 'object', properties: { text: { type: 'string' } } },
                {
                  type: 'object',
                  properties: { image: { type: 'string', description: 'PNG or JPEG, base64' } },
                },
              ],
            },
          },
        },
      },
      PredictResponse: {
        type: 'object',
        properties: {
          model: { type: 'object', properties: { task: { type: 'string' }, version: { type: 'string' } } },
          predictions: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                label: { type: 'string' },
                score: { type: 'number', description: 'calibrated probability of label' },
                scores: { type: 'object', additionalProperties: { type: 'number' } },
              },
            },
          },
        },
      },
      UploadTicket: {
        type: 'object',
        required: ['method', 'url', 'key', 'expiresAt'],
        properties: {
          method: { type: 'string', enum: ['PUT'] },
          url: { type: 'string', format: 'uri' },
          key: { type: 'string', example: 'tasks/support/incoming/20260112t100000z-1a2b3c4d-support.jsonl' },
          expiresAt: { type: 'string', format: 'date-time' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
      EmbeddingsRequest: {
        type: 'object',
        required: ['model', 'input'],
        properties: {
          model: { type: 'string', example: 'hash-ngrams' },
          input: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
          encoding_format: { type: 'string', enum: ['float', 'base64'] },
          dimensions: { type: 'integer', description: 'fold to this power of two' },
        },
      },
    },
  },
  paths: {
    '/health': { get: { summary: 'Liveness', security: [], responses: { '200': ok('ok') } } },
    '/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': ok('OpenAPI') } } },
    '/v1/tasks': { get: { summary: 'List tasks', responses: { '200': ok('tasks'), ...errors } } },
    '/v1/tasks/{task}': {
      parameters: [task],
      put: {
        summary: 'Create or update a task',
        requestBody: { content: json(ref('TaskInput')) },
        responses: { '200': ok('updated'), '201': ok('created'), ...errors },
      },
      get: { summary: 'A task and its model in service', responses: { '200': ok('task'), ...errors } },
    },
    '/v1/tasks/{task}/datasets': {
      parameters: [task],
      post: {
        summary: 'Upload a dataset version (queues a training job when autoTrain)',
        requestBody: {
          required: true,
          content: {
            'application/x-ndjson': {
              schema: { type: 'string', description: 'one {"text","label"} object a line' },
            },
            'text/csv': { schema: { type: 'string', description: 'header row with text,label columns' } },
          },
        },
        responses: {
          '201': ok('stored'),
          '200': ok('already stored'),
          '413': errors['400'],
          '415': errors['400'],
          '422': errors['400'],
          ...errors,
        },
      },
      get: {
        summary: 'Dataset versions, and files from incoming/ that were rejected (with the reason)',
        responses: { '200': ok('datasets'), ...errors },
      },
    },
    '/v1/tasks/{task}/uploads': {
      parameters: [task],
      post: {
        summary: 'A signed URL to PUT a dataset file of any size into the task drop zone (incoming/)',
        description:
          'The file must be PUT to `url` with `headers` before `expiresAt` (15 minutes). In AWS it goes straight to ' +
          'S3 and is ingested by the dispatcher; locally the server ingests it at once. It then shows up in GET ' +
          '/v1/tasks/{task}/datasets as a version with source `incoming/{file part of key}`, or under `rejected`.',
        requestBody: {
          required: true,
          content: json({
            type: 'object',
            required: ['file'],
            additionalProperties: false,
            properties: {
              file: {
                type: 'string',
                pattern: '^[A-Za-z0-9._-]{1,100}$',
                description: 'file name ending in .jsonl, .ndjson or .csv (it sets the format)',
                example: 'support-2026-01.jsonl',
              },
            },
          }),
        },
        responses: { '200': ok('where to upload', ref('UploadTicket')), ...errors },
      },
    },
    '/v1/uploads/{token}': {
      parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string' } }],
      put: {
        summary: 'Upload a file to a signed URL (local server only; in AWS the URL points at S3)',
        description:
          'No API key: the signed token is the authorisation. The body is the file; it is ingested at once.',
        security: [],
        requestBody: {
          required: true,
          content: { 'application/octet-stream': { schema: { type: 'string' } } },
        },
        responses: {
          '201': ok('stored; a job is queued when the task trains on upload'),
          '200': ok('the same rows were uploaded before'),
          '403': errors['403'],
          '404': errors['404'],
          '413': errors['400'],
          '415': errors['400'],
          '422': errors['400'],
          '400': errors['400'],
        },
      },
    },
    '/v1/tasks/{task}/jobs': {
      parameters: [task],
      post: {
        summary: 'Queue a training job',
        requestBody: {
          content: json({
            type: 'object',
            properties: {
              datasets: { type: 'array', items: { type: 'string' } },
              strategy: { type: 'string', enum: ['auto', 'zero-shot', 'centroid', 'logistic', 'mlp'] },
              hyperparameters: { type: 'object' },
            },
          }),
        },
        responses: { '202': ok('queued'), ...errors },
      },
    },
    '/v1/jobs': { get: { summary: 'Recent jobs (?task=)', responses: { '200': ok('jobs'), ...errors } } },
    '/v1/jobs/{id}': {
      parameters: [jobId],
      get: { summary: 'A job', responses: { '200': ok('job', ref('Job')), ...errors } },
    },
    '/v1/jobs/{id}/cancel': {
      parameters: [jobId],
      post: {
        summary: 'Cancel a job',
        responses: { '200': ok('job', ref('Job')), '409': errors['400'], ...errors },
      },
    },
    '/v1/tasks/{task}/predict': {
      parameters: [task],
      post: {
        summary: 'Predict with the model in service',
        requestBody: { required: true, content: json(ref('PredictRequest')) },
        responses: { '200': ok('predictions', ref('PredictResponse')), '409': errors['400'], ...errors },
      },
    },
    '/v1/embeddings': {
      post: {
        summary: 'Backbone embeddings (OpenAI-compatible)',
        requestBody: { required: true, content: json(ref('EmbeddingsRequest')) },
        responses: { '200': ok('embeddings'), ...errors },
      },
    },
    '/v1/backbones': {
      get: {
        summary: 'Backbones: the built-in hash-ngrams and the registered ones',
        responses: { '200': ok('backbones'), ...errors },
      },
    },
    '/v1/backbones/{name}': {
      parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
      get: { summary: 'A backbone and its configuration', responses: { '200': ok('backbone'), ...errors } },
      put: {
        summary: 'Register a text (sentence-transformer layout) or image (ONNX CNN cut at a tensor) backbone',
        requestBody: {
          required: true,
          content: json({
            type: 'object',
            required: ['kind', 'source'],
            properties: {
              kind: { type: 'string', enum: ['text', 'image'] },
              source: {
                oneOf: [
                  {
                    type: 'object',
                    properties: {
                      hub: { type: 'string' },
                      revision: { type: 'string' },
                      file: { type: 'string' },
                    },
                  },
                  {
                    type: 'object',
                    properties: { dir: { type: 'string', description: 'local Graft only' } },
                  },
                  { type: 'object', properties: { store: { const: true } } },
                ],
              },
              pooling: { type: 'string', enum: ['mean', 'cls'] },
              normalize: { type: 'boolean' },
              maxLength: { type: 'integer' },
              cutAt: { type: 'string', description: 'image: the feature tensor to cut the network at' },
              input: {
                type: 'object',
                description: 'image: name, width, height, channels, scale, mean, std, invert?',
              },
              includeRawInput: { type: 'boolean', description: 'image: features + the preprocessed pixels' },
            },
          }),
        },
        responses: { '201': ok('registered'), ...errors },
      },
    },
    '/v1/tasks/{task}/models': {
      parameters: [task],
      get: {
        summary: 'Model versions with status and metrics',
        responses: { '200': ok('models'), ...errors },
      },
    },
    '/v1/tasks/{task}/models/{version}': {
      parameters: [task, version],
      get: { summary: 'Model card', responses: { '200': ok('card'), ...errors } },
    },
    '/v1/tasks/{task}/models/{version}/model.onnx': {
      parameters: [task, version],
      get: {
        summary: 'The self-contained ONNX file',
        responses: {
          '200': { description: 'ONNX (local server)', content: { 'application/octet-stream': {} } },
          '302': {
            description:
              'AWS: a presigned S3 URL (valid 5 minutes) in Location; do not forward the API key to it',
          },
          ...errors,
        },
      },
    },
    '/v1/tasks/{task}/models/{version}/promote': {
      parameters: [task, version],
      post: {
        summary: 'Serve this version',
        responses: { '200': ok('current'), '409': errors['400'], ...errors },
      },
    },
    '/v1/tasks/{task}/rollback': {
      parameters: [task],
      post: {
        summary: 'Serve the previous version again',
        responses: { '200': ok('current'), '409': errors['400'], ...errors },
      },
    },
    '/v1/keys': {
      post: {
        summary: 'Create an API key (shown once)',
        requestBody: {
          required: true,
          content: json({
            type: 'object',
            required: ['scopes'],
            properties: {
              name: { type: 'string' },
              scopes: { type: 'array', items: { enum: ['admin', 'predict'] } },
            },
          }),
        },
        responses: { '201': ok('key'), ...errors },
      },
      get: { summary: 'List API keys', responses: { '200': ok('keys'), ...errors } },
    },
    '/v1/keys/{id}': {
      parameters: [keyId],
      delete: { summary: 'Revoke an API key', responses: { '200': ok('revoked'), ...errors } },
    },
  },
} as const;
