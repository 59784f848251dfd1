// Serving without reading the store per request: the local server trusts a task's model pointer and a named
// backbone for a while, and hears the promotions, rollbacks and registrations made in its own process at once;
// the Predictor reuses its dense input buffers, never one that a run in flight reads.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLocalDeps, startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';
import { silentLogger } from '../src/core/logger.js';
import { setCurrent } from '../src/core/models.js';
import { ReadThroughCache } from '../src/core/read-through-cache.js';
import { embedTexts, loadTextBackbone, readTextBackboneDir } from '../src/engine/backbones/text.js';
import { Predictor, type RawInput, trainClassifier } from '../src/engine/index.js';
import { OnnxSession } from '../src/runtime/onnx.js';
import { labelled, openHashBackbone, splitRows, TOPICS, topicTexts } from './support/engine-data.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { client, expectError } from './support/http.js';
import { writeTinyBertLayout } from './support/tiny-bert.js';

const KEY = 'test-admin-key-0123456789';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  return Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - (b[i] as number))), 0);
};

async function start(options: Parameters<typeof startLocalPlatform>[1] = {}) {
  const dataDir = await tempDir();
  const platform = await startLocalPlatform(
    loadLocalConfig({ PORT: '0', HOST: '127.0.0.1', GRAFT_DATA_DIR: dataDir, GRAFT_API_KEY: KEY }),
    { log: silentLogger, heartbeatMs: 200, ...options },
  );
  const api = client((p, init) => fetch(`${platform.url}${p}`, init), KEY);
  /** Uploads a dataset and waits for its job: a new version, promoted (the task promotes always). */
  const train = async (task: string, seed: number) => {
    const rows = makeTextDataset({ perLabel: 8, seed });
    const uploaded = await api.post(`/v1/tasks/${task}/datasets`, toJsonl(rows), 'application/x-ndjson');
    expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
    const job = await api.waitForJob(uploaded.body.jobId);
    expect(job.status, JSON.stringify(job.error)).toBe('succeeded');
    return job.modelVersion as string;
  };
  const served = async (task: string) => {
    const answer = await api.post(`/v1/tasks/${task}/predict`, { inputs: ['rain and wind tomorrow'] });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.model.version as string;
  };
  return { dataDir, platform, api, train, served };
}

describe('the model pointer on the local server', () => {
  it('serves a retrain, a promotion and a rollback made in the process from the next request on', async () => {
    // given a server that would trust a pointer for a minute, and a task with v1 in service
    const { dataDir, platform, api, train, served } = await start({ pointerRefreshMs: 60_000 });
    try {
      await api.put('/v1/tasks/topics', { promotion: { mode: 'always' } });
      expect(await train('topics', 1)).toBe('v1');
      expect(await served('topics')).toBe('v1');

      // when the worker promotes a retrain: the next request is answered by it
      expect(await train('topics', 2)).toBe('v2');
      expect(await served('topics')).toBe('v2');
      // and a rollback and a promotion by request, likewise
      expect((await api.post('/v1/tasks/topics/rollback')).body.version).toBe('v1');
      expect(await served('topics')).toBe('v1');
      expect((await api.post('/v1/tasks/topics/models/v2/promote')).body.version).toBe('v2');
      expect(await served('topics')).toBe('v2');

      // and one written by another process on the same data directory waits for the pointer's minute to be over
      await setCurrent(createLocalDeps(dataDir, silentLogger), 'topics', 'v1', { reason: 'another process' });
      expect(await served('topics')).toBe('v2');
    } finally {
      await platform.close();
    }
  });

  it("serves another process's promotion once the pointer's refresh time has passed (1 s by default)", async () => {
    // given a task with v2 in service
    const { dataDir, platform, api, train, served } = await start();
    try {
      await api.put('/v1/tasks/topics', { promotion: { mode: 'always' } });
      await train('topics', 1);
      await train('topics', 2);
      expect(await served('topics')).toBe('v2');
      // when another process points the task back at v1
      await setCurrent(createLocalDeps(dataDir, silentLogger), 'topics', 'v1', { reason: 'another process' });
      // then v1 is served within the refresh time (and some slack for a loaded machine)
      const started = Date.now();
      while ((await served('topics')) !== 'v1') {
        expect(Date.now() - started).toBeLessThan(5_000);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await platform.close();
    }
  });
});

describe('ReadThroughCache', () => {
  /** A read whose answer the test gives, in the order the reads were made. */
  function reads() {
    const pending: Array<{ resolve: (value: string) => void; reject: (err: Error) => void }> = [];
    return {
      count: () => pending.length,
      read: () => new Promise<string>((resolve, reject) => pending.push({ resolve, reject })),
      answer: (i: number, value: string) => pending[i]?.resolve(value),
      fail: (i: number) => pending[i]?.reject(new Error('store down')),
    };
  }

  it('shares one read among concurrent callers and keeps its value for the ttl', async () => {
    const store = reads();
    const cache = new ReadThroughCache<string>(60_000);
    const a = cache.get('k', store.read);
    const b = cache.get('k', store.read);
    store.answer(0, 'v1');
    expect([await a, await b, await cache.get('k', store.read)]).toEqual(['v1', 'v1', 'v1']);
    expect(store.count()).toBe(1);
  });

  it('does not keep a read that an invalidation overtook: it answers its callers, the next get reads again', async () => {
    const store = reads();
    const cache = new ReadThroughCache<string>(60_000);
    // a read starts, then a write lands and invalidates, then the read returns what it saw before the write
    const before = cache.get('k', store.read);
    cache.invalidate('k');
    store.answer(0, 'old');
    expect(await before).toBe('old');
    const after = cache.get('k', store.read);
    store.answer(1, 'new');
    expect(await after).toBe('new');
    expect(await cache.get('k', store.read)).toBe('new');
    expect(store.count()).toBe(2);
  });

  it('does not keep a failed read, and with a ttl of 0 reads every time', async () => {
    const store = reads();
    const cache = new ReadThroughCache<string>(60_000);
    const failed = cache.get('k', store.read);
    store.fail(0);
    await expect(failed).rejects.toThrow('store down');
    const retried = cache.get('k', store.read);
    store.answer(1, 'v1');
    expect(await retried).toBe('v1');

    const uncached = new ReadThroughCache<string>(0);
    const first = uncached.get('k', store.read);
    const second = uncached.get('k', store.read);
    store.answer(2, 'a');
    store.answer(3, 'b');
    expect([await first, await second]).toEqual(['a', 'b']);
  });
});

describe('Predictor input buffers (hash model)', () => {
  it('gives concurrent predictions of different texts the results of each text predicted alone', async () => {
    // given a hash model, and each text's probabilities from a predictor that predicts nothing else
    const backbone = await openHashBackbone();
    const { train, validation } = splitRows(topicTexts(60, 3));
    const { onnx } = await trainClassifier(
      await labelled(backbone, train),
      await labelled(backbone, validation),
      {
        backbone,
        labels: Object.keys(TOPICS),
        strategy: 'logistic',
      },
    );
    const texts = [...topicTexts(24, 11).map((r) => r.input as string), '', 'zzz qqq'];
    const alone: Float32Array[] = [];
    for (const text of texts) {
      const fresh = await Predictor.load(onnx);
      alone.push(...(await fresh.predict([text])));
      await fresh.dispose();
    }

    // when one predictor runs them concurrently, in batches of 1 to 4, again and again, with a failing batch among them
    const predictor = await Predictor.load(onnx);
    try {
      for (let round = 0; round < 3; round++) {
        const batches: number[][] = [];
        for (let start = 0, size = 1 + round; start < texts.length; start += size, size = (size % 4) + 1) {
          batches.push(texts.slice(start, start + size).map((_, k) => start + k));
        }
        const bad = expect(predictor.predict(['fine', 7 as unknown as RawInput])).rejects.toMatchObject({
          code: 'BAD_REQUEST',
          details: { index: 1 },
        });
        const results = await Promise.all(
          batches.map((batch) => predictor.predict(batch.map((i) => texts[i] as string))),
        );
        await bad;

        // then every text gets the probabilities it gets alone: no buffer was shared or left dirty
        batches.forEach((batch, b) => {
          batch.forEach((i, row) => {
            const got = results[b]?.[row] ?? new Float32Array();
            expect(maxAbsDiff(got, alone[i] ?? []), `text ${i}, round ${round}`).toBeLessThan(1e-6);
          });
        });
      }
    } finally {
      await predictor.dispose();
    }
  });
});

describe('/v1/embeddings on the local server', () => {
  it('embeds with a backbone replaced by PUT /v1/backbones/{name} from the next request on', async () => {
    // given a backbone registered from one model, and a request embedded with it
    const { dataDir, platform, api } = await start();
    try {
      const [first, second] = [path.join(dataDir, 'bert-a'), path.join(dataDir, 'bert-b')];
      await writeTinyBertLayout(first, { seed: 1 });
      await writeTinyBertLayout(second, { seed: 2 });
      const embed = async () => {
        const answer = await api.post('/v1/embeddings', { model: 'bert', input: 'the dog sat on the mat' });
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
        return answer.body.data[0].embedding as number[];
      };
      expect((await api.put('/v1/backbones/bert', { kind: 'text', source: { dir: first } })).status).toBe(
        201,
      );
      const before = await embed();
      expect(await embed()).toEqual(before);

      // when the name is registered again from another model
      expect((await api.put('/v1/backbones/bert', { kind: 'text', source: { dir: second } })).status).toBe(
        201,
      );

      // then the next request embeds with that model, as the engine does with its files
      const after = await embed();
      const engine = await loadTextBackbone(await readTextBackboneDir(second), { name: 'bert' });
      const session = await OnnxSession.create(engine.graph);
      const [want] = await embedTexts(engine, session, ['the dog sat on the mat']);
      await session.dispose();
      expect(after).not.toEqual(before);
      expect(maxAbsDiff(after, want ?? [])).toBeLessThan(1e-5);
      // and an unknown name is still refused, not remembered
      expectError(await api.post('/v1/embeddings', { model: 'nope', input: 'x' }), 404, 'BACKBONE_NOT_FOUND');
    } finally {
      await platform.close();
    }
  });
});
