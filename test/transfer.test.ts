import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalDeps } from '../src/adapters/local/platform.js';
import { createApp } from '../src/api/app.js';
import { sha256Hex } from '../src/core/auth.js';
import { openNamedBackbone } from '../src/core/backbones.js';
import { listDatasets } from '../src/core/datasets.js';
import type { CoreDeps } from '../src/core/deps.js';
import { silentLogger } from '../src/core/logger.js';
import { ModelCache } from '../src/core/predict.js';
import { processMessage } from '../src/core/queue-worker.js';
import { getTask } from '../src/core/tasks.js';
import { buildTrainingSet } from '../src/core/training-set.js';
import { Predictor } from '../src/engine/index.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { client, expectError } from './support/http.js';
import { createTinyBertLayout, writeTinyBertLayout } from './support/tiny-bert.js';
import { greyPng, tinyCnn } from './support/tiny-cnn.js';

const KEY = 'transfer-admin-key-0123456789';

/** Counts the object-store calls made for each key prefix, to see what the worker read and wrote. */
function countingStore(store: ObjectStore) {
  const puts: string[] = [];
  const finds: string[] = [];
  const wrapped: ObjectStore = {
    get: (key) => store.get(key),
    find: (key) => {
      finds.push(key);
      return store.find(key);
    },
    put: (key, body, options) => {
      puts.push(key);
      return store.put(key, body, options);
    },
    delete: (key) => store.delete(key),
    list: (prefix) => store.list(prefix),
  };
  return { wrapped, puts, finds };
}

async function setup() {
  const dataDir = await tempDir();
  const local = createLocalDeps(dataDir, silentLogger);
  const counting = countingStore(local.store);
  const deps: CoreDeps = { ...local, store: counting.wrapped, allowDirSources: true };
  const app = createApp({ ...deps, auth: { adminKeySha256: sha256Hex(KEY) }, models: new ModelCache(deps) });
  const api = client((p, init) => app.request(p, init), KEY);
  const drain = async () => {
    for (;;) {
      const [message] = await deps.queue.receive({ maxMessages: 1 });
      if (!message) return;
      await processMessage(deps, message, {});
    }
  };
  /** Uploads rows, runs the job it queued, and returns the job. */
  const train = async (task: string, rows: object[]) => {
    const uploaded = await api.post(`/v1/tasks/${task}/datasets`, toJsonl(rows), 'application/x-ndjson');
    expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
    await drain();
    const job = (await api.get(`/v1/jobs/${uploaded.body.jobId}`)).body;
    expect(job.status, JSON.stringify(job.error)).toBe('succeeded');
    return job;
  };
  return { dataDir, deps, api, counting, drain, train };
}

describe('transfer learning on registered backbones', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  beforeAll(async () => {
    ctx = await setup();
    const dir = path.join(ctx.dataDir, 'tiny-bert');
    await writeTinyBertLayout(dir, { seed: 7 });
    const registered = await ctx.api.put('/v1/backbones/tiny-bert', { kind: 'text', source: { dir } });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
  });

  it('registers a sentence-transformer layout and embeds with it in the OpenAI shape', async () => {
    const listed = (await ctx.api.get('/v1/backbones')).body.backbones;
    expect(listed.map((b: { name: string }) => b.name)).toEqual(['hash-ngrams', 'tiny-bert']);
    expect(listed[1]).toMatchObject({ kind: 'text', dims: 32 });
    const embedded = await ctx.api.post('/v1/embeddings', {
      model: 'tiny-bert',
      input: ['hello world', 'a b c'],
    });
    expect(embedded.status, JSON.stringify(embedded.body)).toBe(200);
    expect(embedded.body.data[0].embedding).toHaveLength(32);
    expect(embedded.body.usage.prompt_tokens).toBeGreaterThan(4);
    expectError(
      await ctx.api.put('/v1/backbones/hash-ngrams', { kind: 'text', source: { dir: '/x' } }),
      400,
      'INVALID_NAME',
    );
    expectError(
      await ctx.api.put('/v1/backbones/missing', {
        kind: 'text',
        source: { dir: path.join(ctx.dataDir, 'nothing') },
      }),
      404,
      'BACKBONE_NOT_FOUND',
    );
    expectError(await ctx.api.put('/v1/tasks/t', { backbone: 'nope' }), 404, 'BACKBONE_NOT_FOUND');
  });

  it('registers a backbone from files already in the store, shows manifests, and names the known backbones', async () => {
    // given the tiny-bert layout copied under backbones/stored-bert/ in the store
    const files = createTinyBertLayout({ seed: 7 });
    for (const [relative, content] of Object.entries(files)) {
      await ctx.deps.store.put(`backbones/stored-bert/${relative}`, content);
    }

    // when it is registered from there
    const registered = await ctx.api.put('/v1/backbones/stored-bert', {
      kind: 'text',
      source: { store: true },
    });

    // then its manifest lists the files, and it embeds as the same model registered from a directory does
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const fromDir = (await ctx.api.get('/v1/backbones/tiny-bert')).body;
    expect(registered.body.files).toEqual(fromDir.files);
    expect(registered.body.files).toContain('onnx/model.onnx');
    const shown = await ctx.api.get('/v1/backbones/stored-bert');
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual(registered.body);
    expect((await ctx.api.get('/v1/backbones/hash-ngrams')).body).toMatchObject({
      name: 'hash-ngrams',
      source: { builtIn: true },
      createdAt: null,
    });
    const embed = async (model: string) =>
      (await ctx.api.post('/v1/embeddings', { model, input: 'the dog sat on the mat' })).body.data[0]
        .embedding;
    expect(await embed('stored-bert')).toEqual(await embed('tiny-bert'));

    // and an unknown name, or one that is no name, is refused with the backbones there are
    for (const name of ['nope', 'Not_A_Name']) {
      const unknown = await ctx.api.get(`/v1/backbones/${name}`);
      expectError(unknown, 404, 'BACKBONE_NOT_FOUND');
      expect(unknown.body.error.message).toContain('Available: hash-ngrams, stored-bert, tiny-bert.');
    }
    expectError(
      await ctx.api.put('/v1/backbones/empty', { kind: 'text', source: { store: true } }),
      404,
      'BACKBONE_NOT_FOUND',
    );
  });

  it('trains a head on the text backbone, caches the embeddings, and exports one self-contained model', async () => {
    // given
    await ctx.api.put('/v1/tasks/topics', { backbone: 'tiny-bert', strategy: 'logistic' });
    const rows = makeTextDataset({ perLabel: 15 });

    // when
    const job = await ctx.train('topics', rows);

    // then the card tells the strategy, and the file predicts on its own (tokenizer inside)
    const card = (await ctx.api.get('/v1/tasks/topics/models/v1')).body;
    expect(card).toMatchObject({ strategy: 'logistic', backbone: { kind: 'text', name: 'tiny-bert' } });
    expect(card.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    const cacheKeys = ctx.counting.puts.filter((key) => key.startsWith('cache/embeddings/'));
    expect(cacheKeys).toHaveLength(1);
    const { body } = await ctx.deps.store.get(`tasks/topics/models/${job.modelVersion}/model.onnx`);
    const predictor = await Predictor.load(body);
    const [own] = await predictor.predict(['storm and snow']);
    await predictor.dispose();
    const served = await ctx.api.post('/v1/tasks/topics/predict', { inputs: ['storm and snow'] });
    expect(served.body.predictions[0].scores[predictor.labels[0] as string]).toBeCloseTo(own?.[0] ?? -1, 5);

    // a retrain of the same data with another head reads the cached embeddings instead of running the backbone
    const puts = ctx.counting.puts.length;
    const again = await ctx.api.post('/v1/tasks/topics/jobs', { strategy: 'centroid' });
    await ctx.drain();
    expect((await ctx.api.get(`/v1/jobs/${again.body.id}`)).body.status).toBe('succeeded');
    expect(ctx.counting.puts.slice(puts).filter((key) => key.startsWith('cache/embeddings/'))).toEqual([]);
    expect(ctx.counting.finds).toContain(cacheKeys[0]);
    expect((await ctx.api.get('/v1/tasks/topics/models/v2')).body.strategy).toBe('centroid');
  });

  it('starts zero-shot from label descriptions, with no training', async () => {
    await ctx.api.put('/v1/tasks/zero', {
      backbone: 'tiny-bert',
      strategy: 'zero-shot',
      labels: [
        { name: 'weather', description: 'rain snow storm forecast' },
        { name: 'sports', description: 'goal team match score' },
        { name: 'finance', description: 'stock bank loan market' },
      ],
    });
    await ctx.train('zero', makeTextDataset({ perLabel: 6 }));
    const card = (await ctx.api.get('/v1/tasks/zero/models/v1')).body;
    expect(card.strategy).toBe('zero-shot');
    expect(card.labels).toEqual(['weather', 'sports', 'finance']);
  });

  it('keeps earlier dataset versions in a retrain (rehearsal) and scores the candidate on their validation rows', async () => {
    await ctx.api.put('/v1/tasks/continual', { training: { rehearsalPerLabel: 4 } });
    await ctx.train('continual', makeTextDataset({ perLabel: 15, seed: 1 }));
    const later = makeTextDataset({ perLabel: 10, seed: 9 }).map((r) => ({ ...r, text: `${r.text} later` }));
    await ctx.train('continual', later);
    const card = (await ctx.api.get('/v1/tasks/continual/models/v2')).body;
    expect(card.data).toMatchObject({ newRows: 24, rehearsedRows: 12 });
    expect(card.data.earlierValidationRows).toBeGreaterThan(0);
    expect(card.earlierMetrics.n).toBe(card.data.earlierValidationRows);
    expect(card.promotion.comparison.candidate).toHaveProperty('earlierRowsMacroF1');
  });

  it("trains with the task's seed or the job's, and validates every version on the same rows whatever the seed", async () => {
    await ctx.api.put('/v1/tasks/seeded', { training: { seed: 7 } });
    await ctx.train('seeded', makeTextDataset({ perLabel: 15, seed: 3 }));
    expect((await ctx.api.get('/v1/tasks/seeded/models/v1')).body.training.seed).toBe(7);
    const queued = await ctx.api.post('/v1/tasks/seeded/jobs', { hyperparameters: { seed: 99 } });
    expect(queued.status, JSON.stringify(queued.body)).toBe(202);
    await ctx.drain();
    expect((await ctx.api.get(`/v1/jobs/${queued.body.id}`)).body.status).toBe('succeeded');
    expect((await ctx.api.get('/v1/tasks/seeded/models/v2')).body.training.seed).toBe(99);
    // the split, as both jobs built it
    const task = await getTask(ctx.deps, 'seeded');
    const manifests = await listDatasets(ctx.deps, 'seeded');
    const backbone = await openNamedBackbone(ctx.deps, task.backbone);
    const build = (seed: number) => buildTrainingSet(ctx.deps, task, manifests, backbone, { seed });
    const [a, b] = await Promise.all([build(7), build(99)]);
    expect(b.validation.inputs).toEqual(a.validation.inputs);
    expect([...b.train.inputs].sort()).toEqual([...a.train.inputs].sort());
  });

  it('self-trains on unlabelled rows and records the rounds', async () => {
    await ctx.api.put('/v1/tasks/self', { training: { selfTraining: { threshold: 0.5, maxRounds: 2 } } });
    const labelled = makeTextDataset({ perLabel: 8, seed: 3 });
    const unlabelled = makeTextDataset({ perLabel: 10, seed: 4 }).map(({ text }) => ({
      text: `${text} extra`,
    }));
    await ctx.train('self', [...labelled, ...unlabelled]);
    const card = (await ctx.api.get('/v1/tasks/self/models/v1')).body;
    expect(card.data.unlabelledRows).toBe(30);
    expect(card.training.selfTraining.rounds).toBeGreaterThanOrEqual(1);
    expect(card.training.selfTraining).toHaveProperty('rowsAdded');
  });

  it('trains on images through a cut CNN and predicts base64 images', async () => {
    // given an 8x8 grey CNN cut at its flattened feature maps, and bright vs dark images
    const model = path.join(ctx.dataDir, 'cnn.onnx');
    await writeFile(model, tinyCnn(5, { width: 8, height: 8, channels: 1, filters: 2 }).bytes);
    const registered = await ctx.api.put('/v1/backbones/tiny-cnn', {
      kind: 'image',
      source: { dir: model },
      cutAt: 'flat',
      input: { name: 'img', width: 8, height: 8, channels: 1, scale: 1 / 255, mean: [0], std: [1] },
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    await ctx.api.put('/v1/tasks/shades', { backbone: 'tiny-cnn' });
    const image = (level: number, i: number) =>
      greyPng(8, 8, (x, y) => level + ((x * 7 + y * 3 + i) % 17) - 8).toString('base64');
    const rows = Array.from({ length: 12 }, (_, i) => [
      { image: image(40, i), label: 'dark' },
      { image: image(210, i), label: 'bright' },
    ]).flat();

    // when
    await ctx.train('shades', rows);

    // then
    const predicted = await ctx.api.post('/v1/tasks/shades/predict', {
      inputs: [{ image: image(30, 99) }, { image: `data:image/png;base64,${image(220, 98)}` }],
    });
    expect(predicted.status, JSON.stringify(predicted.body)).toBe(200);
    expect(predicted.body.predictions.map((p: { label: string }) => p.label)).toEqual(['dark', 'bright']);
    expectError(
      await ctx.api.post('/v1/tasks/shades/predict', { inputs: [{ image: '***' }] }),
      400,
      'BAD_REQUEST',
    );
    expectError(
      await ctx.api.post('/v1/tasks/shades/predict', {
        inputs: [{ image: Buffer.from('not an image').toString('base64') }],
      }),
      422,
      'INVALID_DATASET',
    );
  });
});
