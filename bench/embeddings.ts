// Item 3 of `npm run bench`: texts/s of a MiniLM-sized text backbone through Graft's engine and through
// `POST /v1/embeddings`, against transformers.js (@huggingface/transformers) running the same local files.
import path from 'node:path';
import { env, pipeline } from '@huggingface/transformers';
import { apiClient } from '../eval/client.js';
import { embedTexts, loadTextBackbone, readTextBackboneDir } from '../src/engine/backbones/text.js';
import { OnnxSession } from '../src/runtime/onnx.js';
import type { ChildServer } from '../test/support/child-server.js';
import { writeTinyBertLayout } from '../test/support/tiny-bert.js';
import { closedLoop, interleaved, measured, medianOf, postLoad, type RepeatedLoad, type Row } from './lib.js';

/** all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, FFN 1536) with seeded random weights. */
export const MINILM_L6 = {
  hidden: 384,
  layers: 6,
  heads: 12,
  intermediate: 1536,
  maxPositions: 512,
  modelMaxLength: 128,
};

/** Writes the layout to `<root>/<name>`; returns its directory. */
export async function writeMiniLm(root: string, name: string, options: Partial<typeof MINILM_L6> = {}) {
  const dir = path.join(root, name);
  await writeTinyBertLayout(dir, { ...MINILM_L6, ...options, seed: 7 });
  return dir;
}

export async function embeddingsBench({
  root,
  texts,
  server,
  apiKey,
  load,
}: {
  root: string;
  texts: string[];
  server: () => Promise<ChildServer>;
  apiKey: string;
  load: { repeats: number; durationMs: number; warmUpMs: number };
}): Promise<Row[]> {
  // A request of 32 texts takes a second or more here: runs long enough to hold several.
  const slow = { ...load, durationMs: load.durationMs * 2, warmUpMs: load.warmUpMs * 2 };
  const name = 'minilm-l6';
  const dir = await writeMiniLm(root, name);
  const rows: Row[] = [];
  const results = new Map<number, Record<'engine' | 'peer' | 'api', RepeatedLoad>>();
  const backbone = await loadTextBackbone(await readTextBackboneDir(dir), { name });
  const session = await OnnxSession.create(backbone.graph);
  // the peer: transformers.js on the same files, no downloads
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = root;
  const extractor = await pipeline('feature-extraction', name, { dtype: 'fp32' });
  // the API: the same backbone registered from the directory, one client
  const running = await server();
  const startRss = running.rss();
  try {
    await apiClient(running.url, apiKey).put(`/v1/backbones/${name}`, { kind: 'text', source: { dir } });
    for (const batch of [1, 32]) {
      const inputs = texts.slice(0, batch);
      const body = JSON.stringify({ model: name, input: inputs });
      const once = { concurrency: 1 };
      results.set(
        batch,
        await interleaved(
          {
            engine: (ms) =>
              closedLoop(() => embedTexts(backbone, session, inputs), { ...once, durationMs: ms }),
            peer: (ms) =>
              closedLoop(() => extractor(inputs, { pooling: 'mean', normalize: true }), {
                ...once,
                durationMs: ms,
              }),
            api: (ms) =>
              postLoad(`${running.url}/v1/embeddings`, apiKey, body, { connections: 1, durationMs: ms }),
          },
          slow,
          (contender, repeat) =>
            process.stderr.write(`item 3: ${contender}, batch ${batch}, run ${repeat + 1}/${load.repeats}\n`),
        ),
      );
    }
    rows.push({
      item: '6',
      what: 'server peak RSS, MiniLM-L6-shaped text backbone loaded, after the item-3 load',
      value: running.peakRss() / 2 ** 20,
      unit: 'MiB',
      reference: { what: 'same process at start', value: startRss / 2 ** 20 },
      ratio: running.peakRss() / startRss,
    });
  } finally {
    await running.stop();
    await session.dispose();
    await extractor.dispose();
  }

  const textsPerSecond = (r: RepeatedLoad, batch: number) =>
    measured(r.requestsPerSecond.runs.map((x) => x * batch));
  for (const batch of [1, 32]) {
    const measuredBatch = results.get(batch);
    if (!measuredBatch) continue;
    const peer = textsPerSecond(measuredBatch.peer, batch);
    for (const [key, what] of [
      ['engine', 'engine (embedTexts)'],
      ['api', 'POST /v1/embeddings'],
    ] as const) {
      const ours = measuredBatch[key];
      const value = textsPerSecond(ours, batch);
      const ratio = medianOf(value) / medianOf(peer);
      rows.push({
        item: '3',
        what: `${what}, MiniLM-L6 shape, batch ${batch}: texts/s`,
        value,
        unit: 'texts/s',
        reference: { what: 'transformers.js', value: peer },
        ratio,
        target: 'not slower (>= 1x)',
        pass: ratio >= 1,
        ...(ours.errors > 0 ? { note: `${ours.errors} errors` } : {}),
      });
    }
  }
  return rows;
}
