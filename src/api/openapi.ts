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
          backbone: { type: 'string', enum: ['hash-ngrams'] },
          labels: { type: 'array', items: { type: 'string' } },
          strategy: { type: 'string', enum: ['auto', 'logistic'] },
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
              oneOf: [{ type: 'string' }, { type: 'object', properties: { text: { type: 'string' } } }],
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
      get: { summary: 'List dataset versions', responses: { '200': ok('datasets'), ...errors } },
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
              strategy: { type: 'string', enum: ['auto', 'logistic'] },
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
        responses: { '200': { description: 'ONNX', content: { 'application/octet-stream': {} } }, ...errors },
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
