import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { z } from 'zod';
import {
  type AuthOptions,
  authenticate,
  createApiKey,
  listApiKeys,
  type Principal,
  requireScope,
  revokeApiKey,
  SCOPES,
  type Scope,
} from '../core/auth.js';
import {
  BackboneInputSchema,
  getBackboneManifest,
  listBackbones,
  registerBackbone,
  resolveBackbone,
} from '../core/backbones.js';
import { formatFromContentType, MAX_TEXT_LENGTH } from '../core/dataset-parse.js';
import { type IngestResult, ingestDataset, listDatasets, listRejectedUploads } from '../core/datasets.js';
import type { CoreDeps } from '../core/deps.js';
import { embeddings } from '../core/embeddings.js';
import { decodeBase64Image } from '../core/inputs.js';
import { cancelJob, createJob, getJob, JobInputSchema, jobView, listJobs } from '../core/jobs.js';
import {
  findCurrent,
  getCard,
  getModelFile,
  listCards,
  metricsSummary,
  promote,
  rollback,
} from '../core/models.js';
import { type ModelCache, predict } from '../core/predict.js';
import { getTask, listTasks, putTask, type Task, TaskInputSchema } from '../core/tasks.js';
import { createUploadUrl, modelDownloadUrl, receiveUpload, verifyUploadToken } from '../core/transfers.js';
import { type ErrorBody, GraftError, toGraftError } from '../errors.js';
import { checkName } from '../names.js';
import type { SignedUrls } from '../ports/signed-urls.js';
import { nodeRequestBody } from './node-body.js';
import { openApiDocument } from './openapi.js';

export interface AppDeps extends CoreDeps {
  auth: AuthOptions;
  models: ModelCache;
  /** Signed upload and download URLs (S3 presigned in AWS, HMAC locally); without them no direct uploads. */
  signedUrls?: SignedUrls;
  limits?: { maxUploadBytes?: number; maxJsonBytes?: number; maxPredictInputs?: number };
}

type Env = {
  /** On the Node server (@hono/node-server): Node's request; absent in Lambda. */
  Bindings: { incoming?: unknown };
  /** `body`: the JSON body's text, when `hotLimit` read it. */
  Variables: { principal: Principal; uploadKey: string; body: string | undefined };
};

const PredictSchema = z
  .object({
    inputs: z
      .array(
        z.union([
          z.string(),
          z.object({ text: z.string() }).strict(),
          z.object({ image: z.string().min(1) }).strict(),
        ]),
      )
      .min(1, 'inputs must hold at least one text or image'),
  })
  .strict();

const EmbeddingsSchema = z
  .object({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.string()).min(1)]),
    encoding_format: z.enum(['float', 'base64']).optional(),
    dimensions: z.number().int().positive().optional(),
    user: z.string().optional(),
  })
  .strict();

const UploadInputSchema = z.object({ file: z.string() }).strict();

const KeyInputSchema = z
  .object({
    name: z.string().trim().min(1).max(100).default('api key'),
    scopes: z.array(z.enum(SCOPES)).min(1),
  })
  .strict();

/** Builds the HTTP API from its dependencies; it does not know whether they are local or AWS adapters. */
export function createApp(deps: AppDeps): Hono<Env> {
  const {
    maxUploadBytes = 64 * 1024 * 1024,
    maxJsonBytes = 1024 * 1024,
    maxPredictInputs = 256,
  } = deps.limits ?? {};
  const app = new Hono<Env>();

  app.onError((err, c) => {
    const error = fromHttpError(err);
    if (error.status >= 500)
      deps.log.error('request failed', { path: c.req.path, code: error.code, err: String(err) });
    return c.json(boundedErrorBody(error.toJSON()), error.status as 500);
  });
  app.notFound((c) =>
    c.json(
      new GraftError(
        'NOT_FOUND',
        `No route ${c.req.method} ${c.req.path}. The API is described at GET /openapi.json.`,
      ).toJSON(),
      404,
    ),
  );

  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.get('/openapi.json', (c) => c.json(openApiDocument));

  const tooLarge = (maxSize: number) =>
    new GraftError(
      'PAYLOAD_TOO_LARGE',
      `The request body is larger than ${maxSize} bytes. Split the data into smaller uploads${maxSize === maxUploadBytes ? '' : ' or send fewer inputs per request'}.`,
    );
  const limit = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: () => {
        throw tooLarge(maxSize);
      },
    });
  // `limit` for the JSON bodies of predict and embeddings, the requests served most: on the Node server the body is
  // read from Node's request stream itself (see node-body.ts).
  const hotLimit = (maxSize: number) => {
    const web = limit(maxSize);
    return async (c: Context<Env>, next: () => Promise<void>) => {
      const text = await nodeRequestBody(c.env?.incoming, maxSize, () => tooLarge(maxSize));
      if (text === undefined) return web(c, next);
      c.set('body', text);
      await next();
    };
  };
  // Typed by what it uses, not as Context<Env>: a Context<Env> middleware would widen the routes' path params.
  const scope =
    (needed: Scope) =>
    async (
      c: { req: { header(name: string): string | undefined }; set(k: 'principal', v: Principal): void },
      next: () => Promise<void>,
    ) => {
      const principal = await authenticate(deps, c.req.header('authorization'), deps.auth);
      requireScope(principal, needed);
      c.set('principal', principal);
      await next();
    };
  const admin = scope('admin');
  const predictScope = scope('predict');

  // Tasks
  app.get('/v1/tasks', predictScope, async (c) => {
    const tasks = await listTasks(deps);
    return c.json({ tasks: await Promise.all(tasks.map((task) => taskView(deps, task))) });
  });
  app.put('/v1/tasks/:task', admin, limit(maxJsonBytes), async (c) => {
    const name = checkName(c.req.param('task'), 'task name');
    const input = await jsonBody(c.req.raw, TaskInputSchema, { allowEmpty: true });
    if (input.backbone) await resolveBackbone(deps, input.backbone); // an unknown backbone fails here, not in a job
    const { task, created } = await putTask(deps, name, input);
    return c.json(await taskView(deps, task), created ? 201 : 200);
  });
  app.get('/v1/tasks/:task', predictScope, async (c) =>
    c.json(await taskView(deps, await getTask(deps, taskParam(c)))),
  );

  // Datasets and jobs
  app.post('/v1/tasks/:task/datasets', admin, limit(maxUploadBytes), async (c) => {
    const task = taskParam(c);
    const format = formatFromContentType(c.req.header('content-type'));
    const body = new Uint8Array(await c.req.arrayBuffer());
    const { body: answer, status } = ingestedAnswer(await ingestDataset(deps, task, body, format));
    return c.json(answer, status);
  });
  // Direct uploads, past the request size limit: a signed PUT into the task's drop zone (incoming/).
  app.post('/v1/tasks/:task/uploads', admin, limit(maxJsonBytes), async (c) => {
    const task = taskParam(c);
    const { file } = await jsonBody(c.req.raw, UploadInputSchema);
    return c.json(await createUploadUrl(deps, task, file, { origin: new URL(c.req.url).origin }));
  });
  // The local home's upload URLs point here. No API key: the token's signature is the authorisation, checked
  // before any of the body is read.
  app.put(
    '/v1/uploads/:token',
    async (c, next) => {
      c.set('uploadKey', verifyUploadToken(deps, c.req.param('token')));
      await next();
    },
    limit(maxUploadBytes),
    async (c) => {
      const body = new Uint8Array(await c.req.arrayBuffer());
      const key = c.get('uploadKey');
      const { body: answer, status } = ingestedAnswer(await receiveUpload(deps, key, body));
      return c.json({ key, ...answer }, status);
    },
  );
  app.get('/v1/tasks/:task/datasets', admin, async (c) => {
    const task = await getTask(deps, taskParam(c));
    const [datasets, rejected] = await Promise.all([
      listDatasets(deps, task.name),
      listRejectedUploads(deps, task.name),
    ]);
    return c.json({ datasets, rejected });
  });
  app.post('/v1/tasks/:task/jobs', admin, limit(maxJsonBytes), async (c) => {
    const task = await getTask(deps, taskParam(c));
    const input = await jsonBody(c.req.raw, JobInputSchema, { allowEmpty: true });
    const known = (await listDatasets(deps, task.name)).map((d) => d.id);
    const datasets = input.datasets ?? known;
    const missing = datasets.filter((id) => !known.includes(id));
    if (datasets.length === 0) {
      throw new GraftError('DATASET_NOT_FOUND', `Task "${task.name}" has no datasets yet: upload one first.`);
    }
    if (missing.length > 0) {
      throw new GraftError(
        'DATASET_NOT_FOUND',
        `Unknown dataset(s) ${missing.join(', ')} for task "${task.name}".`,
        {
          details: { missing },
        },
      );
    }
    const job = await createJob(deps, task.name, { ...input, datasets });
    return c.json({ id: job.id, status: job.status, modelVersion: job.modelVersion }, 202);
  });
  app.get('/v1/jobs', admin, async (c) => {
    const task = c.req.query('task');
    const jobs = await listJobs(deps, {
      task: task === undefined ? undefined : checkName(task, 'task name'),
    });
    return c.json({ jobs: jobs.map(jobView) });
  });
  app.get('/v1/jobs/:id', admin, async (c) => c.json(jobView(await getJob(deps, c.req.param('id')))));
  app.post('/v1/jobs/:id/cancel', admin, async (c) =>
    c.json(jobView(await cancelJob(deps, c.req.param('id')))),
  );

  // Prediction and embeddings
  app.post('/v1/tasks/:task/predict', predictScope, hotLimit(maxJsonBytes), async (c) => {
    const task = taskParam(c);
    const { inputs } = await jsonBody(c.req.raw, PredictSchema, { text: c.get('body') });
    if (inputs.length > maxPredictInputs) {
      throw new GraftError(
        'BAD_REQUEST',
        `inputs holds ${inputs.length} items; send at most ${maxPredictInputs} per request.`,
      );
    }
    const raw = inputs.map((input, i) => {
      if (typeof input === 'object' && 'image' in input)
        return decodeBase64Image(input.image, `inputs[${i}].image`);
      const text = typeof input === 'string' ? input : input.text;
      if (text.length > MAX_TEXT_LENGTH) {
        throw new GraftError(
          'BAD_REQUEST',
          `inputs[${i}] has ${text.length} characters; at most ${MAX_TEXT_LENGTH}.`,
        );
      }
      return text;
    });
    return c.json(await predict(deps.models, task, raw));
  });
  app.post('/v1/embeddings', predictScope, hotLimit(maxJsonBytes), async (c) => {
    const request = await jsonBody(c.req.raw, EmbeddingsSchema, { text: c.get('body') });
    const count = typeof request.input === 'string' ? 1 : request.input.length;
    if (count > maxPredictInputs) {
      throw new GraftError(
        'BAD_REQUEST',
        `input holds ${count} texts; send at most ${maxPredictInputs} per request.`,
      );
    }
    return c.json(await embeddings(deps, request));
  });

  // Backbones
  app.get('/v1/backbones', predictScope, async (c) => c.json({ backbones: await listBackbones(deps) }));
  app.get('/v1/backbones/:name', predictScope, async (c) =>
    c.json(await getBackboneManifest(deps, c.req.param('name'))),
  );
  app.put('/v1/backbones/:name', admin, limit(maxJsonBytes), async (c) => {
    const name = checkName(c.req.param('name'), 'backbone name');
    const input = await jsonBody(c.req.raw, BackboneInputSchema);
    return c.json(await registerBackbone(deps, name, input), 201);
  });

  // Models
  app.get('/v1/tasks/:task/models', admin, async (c) => {
    const task = await getTask(deps, taskParam(c));
    const [cards, current] = await Promise.all([listCards(deps, task.name), findCurrent(deps, task.name)]);
    const models = cards.map((card) => ({
      version: card.version,
      status: card.version === current?.version ? 'serving' : 'available',
      createdAt: card.createdAt,
      jobId: card.jobId,
      strategy: card.strategy,
      metrics: metricsSummary(card.metrics),
      promotion: card.promotion,
    }));
    return c.json({ current: current?.version ?? null, models });
  });
  app.get('/v1/tasks/:task/models/:version', admin, async (c) =>
    c.json(await getCard(deps, taskParam(c), checkName(c.req.param('version'), 'model version'))),
  );
  app.get('/v1/tasks/:task/models/:version/model.onnx', admin, async (c) => {
    const task = taskParam(c);
    const version = checkName(c.req.param('version'), 'model version');
    // In Lambda a model can outgrow the response: send the client to storage instead.
    const signed = await modelDownloadUrl(deps, task, version);
    if (signed) {
      c.header('cache-control', 'no-store');
      return c.redirect(signed.url, 302);
    }
    const file = await getModelFile(deps, task, version);
    return c.body(file.body as Uint8Array<ArrayBuffer>, 200, {
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename="${task}-${version}.onnx"`,
      etag: file.etag,
    });
  });
  app.post('/v1/tasks/:task/models/:version/promote', admin, async (c) => {
    const current = await promote(deps, taskParam(c), checkName(c.req.param('version'), 'model version'));
    return c.json(current);
  });
  app.post('/v1/tasks/:task/rollback', admin, async (c) => c.json(await rollback(deps, taskParam(c))));

  // API keys
  app.post('/v1/keys', admin, limit(maxJsonBytes), async (c) => {
    const input = await jsonBody(c.req.raw, KeyInputSchema);
    const { key, record } = await createApiKey(deps, input);
    return c.json({ key, ...record }, 201);
  });
  app.get('/v1/keys', admin, async (c) => c.json({ keys: await listApiKeys(deps) }));
  app.delete('/v1/keys/:id', admin, async (c) => c.json(await revokeApiKey(deps, c.req.param('id'))));

  return app;
}

/** The answer to a dataset upload: 201, or 200 when the same rows were uploaded before. */
function ingestedAnswer({ dataset, existing, job }: IngestResult) {
  return {
    body: { datasetId: dataset.id, rows: dataset.rows, existing, report: dataset.report, jobId: job?.id },
    status: existing ? (200 as const) : (201 as const),
  };
}

function taskParam(c: { req: { param(name: 'task'): string } }): string {
  return checkName(c.req.param('task'), 'task name');
}

async function taskView(deps: CoreDeps, task: Task) {
  const { nextVersion: _next, ...rest } = task;
  const current = await findCurrent(deps, task.name);
  const card = current ? await getCard(deps, task.name, current.version).catch(() => undefined) : undefined;
  return {
    ...rest,
    currentModel: current
      ? {
          version: current.version,
          promotedAt: current.promotedAt,
          reason: current.reason,
          metrics: card ? metricsSummary(card.metrics) : undefined,
        }
      : null,
  };
}

/**
 * Reads a JSON body (or takes its `text`, already read) and validates it; every failure is a 4xx that says what to
 * send instead.
 */
async function jsonBody<S extends z.ZodType>(
  request: Request,
  schema: S,
  { allowEmpty = false, text: read }: { allowEmpty?: boolean; text?: string | undefined } = {},
): Promise<z.infer<S>> {
  const text = read ?? (await request.text());
  if (text.trim() === '' && allowEmpty) return schema.parse({});
  const type = request.headers.get('content-type') ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new GraftError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Expected a JSON body with "Content-Type: application/json" (got "${type.slice(0, 80) || 'none'}").`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new GraftError('INVALID_JSON', `The body is not valid JSON: ${(err as Error).message}`);
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.length ? issue.path.join('.') : 'body'}: ${issue.message}`)
      .join('; ');
    throw new GraftError('INVALID_OPTIONS', `Invalid request body (${problems}). See GET /openapi.json.`, {
      details: { issues: result.error.issues.slice(0, 20).map(({ path, message }) => ({ path, message })) },
    });
  }
  return result.data;
}

const MAX_ERROR_MESSAGE = 2_000;
const MAX_ERROR_DETAILS_BYTES = 16 * 1024;

/**
 * Keeps an error answer small whatever the input was: a message that names every one of 100k rejected labels is
 * cut (saying how much), and details too large to send are replaced by a note.
 */
function boundedErrorBody(body: ErrorBody): ErrorBody {
  const { code, message, details } = body.error;
  const error: ErrorBody['error'] = {
    code,
    message:
      message.length > MAX_ERROR_MESSAGE
        ? `${message.slice(0, MAX_ERROR_MESSAGE)}… (${message.length - MAX_ERROR_MESSAGE} more characters)`
        : message,
  };
  if (details) {
    error.details =
      JSON.stringify(details).length > MAX_ERROR_DETAILS_BYTES
        ? { truncated: true, keys: Object.keys(details).slice(0, 20) }
        : details;
  }
  return { error };
}

function fromHttpError(err: unknown): GraftError {
  if (err instanceof HTTPException) {
    const code = err.status === 413 ? 'PAYLOAD_TOO_LARGE' : err.status < 500 ? 'BAD_REQUEST' : 'INTERNAL';
    return new GraftError(code, err.message || `HTTP ${err.status}`, { cause: err });
  }
  return toGraftError(err);
}
