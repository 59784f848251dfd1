// The exported model file as a self-contained artifact: a text model served from its bytes alone, the backbone's
// opset kept, format 1 models still served, and the engine's helpers around backbones.
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import {
  availableExecutionProviders,
  configSha256,
  embed,
  embedWith,
  HASH_NGRAMS,
  openBackbone,
  Predictor,
  readModelMetadata,
  tokenCount,
  trainClassifier,
} from '../src/engine/index.js';
import { readFloat32 } from '../src/engine/onnx-graph.js';
import {
  barImages,
  labelled,
  openHashBackbone,
  openImageBackbone,
  openTinyBert,
  splitRows,
  TOPICS,
  topicTexts,
} from './support/engine-data.js';

const { onnx } = onnxProto;
const labels = Object.keys(TOPICS);

function initializer(model: onnxProto.onnx.ModelProto, name: string): Float32Array {
  const tensor = model.graph?.initializer?.find((t) => t.name === name);
  if (!tensor) throw new Error(`no initializer ${name}`);
  return readFloat32(tensor);
}

describe('a text model file', () => {
  it('is served from its bytes alone (tokenizer in the metadata) and computes softmax((features W + b) / T)', async () => {
    // given a logistic head trained on the tiny BERT, written to a file
    const { backbone, cleanup } = await openTinyBert();
    const { train, validation } = splitRows(topicTexts(60, 7));
    const texts = ['the dog sat on the mat', 'a refund of my money', 'this movie', '', 'qwerty zxcvb'];
    const file = path.join(tmpdir(), `graft-engine-text-${process.pid}.onnx`);
    let features: Float32Array;
    try {
      const result = await trainClassifier(
        await labelled(backbone, train),
        await labelled(backbone, validation),
        {
          backbone,
          labels,
          strategy: 'logistic',
          validationInputs: validation.map((r) => r.input),
        },
      );
      await writeFile(file, result.onnx);
      const extracted = await backbone.extract(texts);
      if (extracted.kind !== 'dense') throw new Error('dense expected');
      features = extracted.data;
    } finally {
      // The backbone's files are gone before the model is served.
      await backbone.dispose();
      await cleanup();
    }
    // when
    const bytes = new Uint8Array(await readFile(file));
    const predictor = await Predictor.load(bytes, { batchSize: 2 });
    const got = await predictor.predict(texts);
    await predictor.dispose();
    // then: by hand, from the file's own head weights and the backbone's features
    const model = onnx.ModelProto.decode(bytes);
    const metadata = readModelMetadata(bytes);
    expect(metadata.backbone.kind).toBe('text');
    expect(JSON.parse(metadata.tokenizer?.tokenizerJson ?? '{}').model.type).toBe('WordPiece');
    expect(metadata.tokenizer?.tokenizerConfigJson).toContain('[PAD]');
    const W = initializer(model, 'graft/head/weight');
    const b = initializer(model, 'graft/head/bias');
    const T = metadata.temperature as number;
    const dims = metadata.backbone.dims;
    texts.forEach((_, i) => {
      const z = labels.map((_, c) => {
        let sum = b[c] as number;
        for (let j = 0; j < dims; j++)
          sum += (features[i * dims + j] as number) * (W[j * labels.length + c] as number);
        return sum / T;
      });
      const max = Math.max(...z);
      const e = z.map((v) => Math.exp(v - max));
      const total = e.reduce((x, y) => x + y, 0);
      e.forEach((v, c) => {
        expect(Math.abs((got[i]?.[c] as number) - v / total)).toBeLessThan(1e-5);
      });
    });
  });

  it('keeps the backbone’s opset (11 here): the head is written for any opset from 8', async () => {
    const { backbone, cleanup } = await openTinyBert({ opset: 11 });
    try {
      const { train, validation } = splitRows(topicTexts(60, 8));
      for (const strategy of ['centroid', 'mlp'] as const) {
        const result = await trainClassifier(
          await labelled(backbone, train),
          await labelled(backbone, validation),
          {
            backbone,
            labels,
            strategy,
            validationInputs: validation.map((r) => r.input),
            hyperparameters: { maxEpochs: 5 },
          },
        );
        const model = onnx.ModelProto.decode(result.onnx);
        expect(model.opsetImport.map((o) => Number(o.version))).toEqual([11]);
        expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      await backbone.dispose();
      await cleanup();
    }
  });
});

describe('Predictor', () => {
  it('gives the same probabilities whatever the batch size (text padding, image batches)', async () => {
    const { backbone, cleanup } = await openTinyBert();
    const image = await openImageBackbone();
    try {
      const { train, validation } = splitRows(topicTexts(48, 9));
      const text = await trainClassifier(
        await labelled(backbone, train),
        await labelled(backbone, validation),
        {
          backbone,
          labels,
          strategy: 'centroid',
          validationInputs: validation.map((r) => r.input),
        },
      );
      const images = splitRows(barImages(24, 3));
      const pictures = await trainClassifier(
        await labelled(image, images.train),
        await labelled(image, images.validation),
        {
          backbone: image,
          labels: ['bar-0', 'bar-1', 'bar-2'],
          strategy: 'centroid',
          validationInputs: images.validation.map((r) => r.input),
        },
      );
      for (const [bytes, inputs] of [
        [text.onnx, ['a', 'the lazy dog sat on the mat and it was good', 'money', 'i love this book']],
        [pictures.onnx, barImages(7, 4).map((r) => r.input)],
      ] as const) {
        const one = await Predictor.load(bytes, { batchSize: 1 });
        const many = await Predictor.load(bytes, { batchSize: 64 });
        const a = await one.predict(inputs);
        const b = await many.predict(inputs);
        await one.dispose();
        await many.dispose();
        a.forEach((row, i) => {
          row.forEach((p, c) => {
            expect(Math.abs(p - (b[i]?.[c] as number))).toBeLessThan(1e-5);
          });
        });
      }
      // bad inputs name their index (in input order, whatever order the batches run)
      const predictor = await Predictor.load(text.onnx);
      await expect(predictor.predict(['fine', 'also fine', 42 as unknown as string])).rejects.toMatchObject({
        code: 'BAD_REQUEST',
        details: { index: 2 },
      });
      await predictor.dispose();
      const imagePredictor = await Predictor.load(pictures.onnx);
      await expect(
        imagePredictor.predict([barImages(1, 1)[0]?.input as never, 'text']),
      ).rejects.toMatchObject({
        code: 'BAD_REQUEST',
        details: { index: 1 },
      });
      await expect(imagePredictor.predict([Uint8Array.of(1, 2, 3)])).rejects.toMatchObject({
        code: 'INVALID_DATASET',
      });
      await imagePredictor.dispose();
    } finally {
      await backbone.dispose();
      await image.dispose();
      await cleanup();
    }
  });
});

describe('backbones', () => {
  it('open from their configuration and files; the wrong files are refused', async () => {
    const { config, files, backbone, cleanup } = await openTinyBert();
    try {
      expect(backbone.dims).toBe(config.dims);
      await expect(openBackbone(config, { tokenizerJson: files.tokenizerJson })).rejects.toMatchObject({
        code: 'BACKBONE_NOT_FOUND',
      });
      const other = await openTinyBert({ seed: 7 });
      await expect(openBackbone(config, { ...files, model: other.files.model })).rejects.toMatchObject({
        code: 'INVALID_OPTIONS',
      });
      await other.backbone.dispose();
      await other.cleanup();
      await expect(backbone.extract([Uint8Array.of(1)])).rejects.toMatchObject({ code: 'INVALID_DATASET' });
    } finally {
      await backbone.dispose();
      await cleanup();
    }
  });

  it('extract in input order with progress, and stop on abort', async () => {
    const { backbone, cleanup } = await openTinyBert();
    try {
      const texts = ['a', 'the cat sat on the mat', 'money', 'bank refund please', 'dog'];
      const progress: number[] = [];
      const all = await backbone.extract(texts, { batchSize: 2, onProgress: (f) => progress.push(f) });
      const one = await backbone.extract([texts[3] as string]);
      if (all.kind !== 'dense' || one.kind !== 'dense') throw new Error('dense expected');
      const row = all.data.subarray(3 * all.dims, 4 * all.dims);
      row.forEach((v, j) => {
        expect(v).toBeCloseTo(one.data[j] as number, 5);
      });
      expect(progress.at(-1)).toBe(1);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      const controller = new AbortController();
      const reason = new Error('stop');
      const aborted = backbone.extract(texts, {
        batchSize: 1,
        signal: controller.signal,
        onProgress: () => controller.abort(reason),
      });
      await expect(aborted).rejects.toBe(reason);
    } finally {
      await backbone.dispose();
      await cleanup();
    }
  });

  it('embedWith gives L2-normalised rows (truncated to `dimensions` and renormalised); tokenCount counts tokens', async () => {
    const { backbone, config, cleanup } = await openTinyBert();
    try {
      const [full] = await embedWith(backbone, ['the cat sat']);
      const [short] = await embedWith(backbone, ['the cat sat'], { dimensions: 8 });
      const norm = (v: Float32Array) => Math.hypot(...v);
      expect(norm(full as Float32Array)).toBeCloseTo(1, 5);
      expect(short).toHaveLength(8);
      expect(norm(short as Float32Array)).toBeCloseTo(1, 5);
      const scale = norm((full as Float32Array).slice(0, 8));
      short?.forEach((v, j) => {
        expect(v).toBeCloseTo(((full as Float32Array)[j] as number) / scale, 5);
      });
      await expect(embedWith(backbone, ['x'], { dimensions: 0 })).rejects.toMatchObject({
        code: 'INVALID_OPTIONS',
      });
      // [CLS] the cat sat [SEP]
      expect(tokenCount(backbone, 'the cat sat')).toBe(5);
      expect(tokenCount(config, 'the cat sat')).toBe(5);
      expect(() => embed(config, ['x'])).toThrow(/embedWith/);
    } finally {
      await backbone.dispose();
      await cleanup();
    }
    const hash = await openHashBackbone(64);
    expect(await embedWith(hash, ['hello world'], { dimensions: 16 })).toEqual(
      embed(hash.config, ['hello world'], { dimensions: 16 }),
    );
    expect(tokenCount(hash, 'hello, world')).toBe(3);
  });

  it('configSha256 ignores key order and changes with any setting', () => {
    const reordered = Object.fromEntries(Object.entries(HASH_NGRAMS).reverse()) as typeof HASH_NGRAMS;
    expect(Object.keys(reordered)).not.toEqual(Object.keys(HASH_NGRAMS));
    expect(configSha256(reordered)).toBe(configSha256(HASH_NGRAMS));
    expect(configSha256({ ...HASH_NGRAMS, dims: 2 ** 15 })).not.toBe(configSha256(HASH_NGRAMS));
    expect(configSha256(HASH_NGRAMS)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('availableExecutionProviders ends with cpu (and starts with cuda only where a CUDA session can be made)', async () => {
    const providers = await availableExecutionProviders();
    expect(providers.at(-1)).toBe('cpu');
    expect(['cpu', 'cuda,cpu']).toContain(providers.join());
  });
});
