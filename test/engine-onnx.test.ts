import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { softmax } from '../src/engine/calibration.js';
import { exportHeadToOnnx, readModelMetadata } from '../src/engine/export-onnx.js';
import { HashNgramsFeaturizer } from '../src/engine/hash-ngrams.js';
import { type BackboneConfig, HASH_NGRAMS, Predictor } from '../src/engine/index.js';
import { createRng } from '../src/engine/rng.js';
import { SoftmaxHead } from '../src/engine/softmax-head.js';
import { forget, memoize, OnnxSession } from '../src/runtime/onnx.js';

const { onnx } = onnxProto;

function randomHead(dims: number, classes: number, seed: number): SoftmaxHead {
  const rng = createRng(seed);
  return new SoftmaxHead(
    dims,
    classes,
    Float32Array.from({ length: dims * classes }, () => rng.next() * 4 - 2),
    Float32Array.from({ length: classes }, () => rng.next() - 0.5),
  );
}

describe('exportHeadToOnnx', () => {
  // A 16 x 3 head worked by hand: W = [[1, 2, 3], [-1, 0.5, 0], 0...], b = [0.1, -0.2, 0.3], T = 2
  const weights = new Float32Array(16 * 3);
  weights.set([1, 2, 3, -1, 0.5, 0]);
  const head = new SoftmaxHead(16, 3, weights, Float32Array.of(0.1, -0.2, 0.3));
  const backbone: BackboneConfig = { ...HASH_NGRAMS, dims: 16 };
  const bytes = exportHeadToOnnx({ head, temperature: 2, labels: ['x', 'y', 'z'], backbone });

  it('computes softmax((x W + b) / T) in ONNX Runtime as by hand', async () => {
    // given x = [[1, 0, 0...], [0.5, 2, 0...], [0...]]
    const session = await OnnxSession.create(bytes);
    try {
      // when
      const x = new Float32Array(3 * 16);
      x.set([1, 0], 0);
      x.set([0.5, 2], 16);
      const out = await session.run({ features: { type: 'float32', data: x, dims: [3, 16] } });
      // then: logits row 0 = [1.1, 1.8, 3.3]; row 1 = 0.5 [1, 2, 3] + 2 [-1, 0.5, 0] + b = [-1.4, 1.8, 1.8];
      // row 2 = b
      const logits = [
        [1.1, 1.8, 3.3],
        [-1.4, 1.8, 1.8],
        [0.1, -0.2, 0.3],
      ];
      const probabilities = logits.map((z) => {
        const e = z.map((v) => Math.exp(v / 2));
        const sum = e.reduce((a, b) => a + b, 0);
        return e.map((v) => v / sum);
      });
      expect(out.logits?.dims).toEqual([3, 3]);
      expect(out.probabilities?.dims).toEqual([3, 3]);
      const gotLogits = out.logits?.data as Float32Array;
      const gotProbabilities = out.probabilities?.data as Float32Array;
      logits.flat().forEach((v, i) => {
        expect(Math.abs((gotLogits[i] as number) - v)).toBeLessThan(1e-6);
      });
      probabilities.flat().forEach((v, i) => {
        expect(Math.abs((gotProbabilities[i] as number) - v)).toBeLessThan(1e-6);
      });
    } finally {
      await session.dispose();
    }
  });

  it('stores labels, backbone, format and producer in the model', () => {
    const model = onnx.ModelProto.decode(bytes);
    expect(model.producerName).toBe('graft');
    expect(Number(model.opsetImport[0]?.version)).toBe(17);
    const props = Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
    expect(props['graft.format']).toBe('2');
    expect(JSON.parse(props['graft.labels'] as string)).toEqual(['x', 'y', 'z']);
    expect(JSON.parse(props['graft.backbone'] as string)).toEqual(backbone);
    expect(model.graph?.input?.map((i) => i.name)).toEqual(['features']);
    expect(model.graph?.output?.map((o) => o.name)).toEqual(['logits', 'probabilities']);
  });

  it('refuses, in readModelMetadata, a model whose input is not the backbone dims wide', () => {
    expect(readModelMetadata(bytes).backbone).toEqual(backbone);
    const model = onnx.ModelProto.decode(bytes);
    const dim = model.graph?.input?.[0]?.type?.tensorType?.shape?.dim?.[1];
    if (dim) dim.dimValue = 2;
    const narrow = onnx.ModelProto.encode(model).finish();
    expect(() => readModelMetadata(narrow)).toThrowError(/must be \[N, 16\].*it is \[N, 2\]/);
  });

  it('refuses, in readModelMetadata, an ONNX model that Graft did not export', () => {
    const foreign = onnx.ModelProto.encode(
      onnx.ModelProto.create({ irVersion: 8, graph: { name: 'other' }, opsetImport: [{ version: 17 }] }),
    ).finish();
    expect(() => readModelMetadata(foreign)).toThrowError(
      expect.objectContaining({ code: 'BAD_REQUEST' }) as unknown as Error,
    );
    expect(() => readModelMetadata(Uint8Array.of(1, 2, 3, 4))).toThrowError(
      expect.objectContaining({ code: 'BAD_REQUEST' }) as unknown as Error,
    );
  });

  it('agrees with the trainer’s own probabilities within 1e-5 on a 4096 x 10 head', async () => {
    // given a random head and random sparse rows
    const dims = 4096;
    const head = randomHead(dims, 10, 4);
    const rng = createRng(8);
    const features = new Float32Array(64 * dims);
    const expected: Float64Array[] = [];
    for (let r = 0; r < 64; r++) {
      const indices = Int32Array.from(new Set(Array.from({ length: 40 }, () => rng.int(dims)))).sort();
      const values = Float32Array.from(indices, () => rng.next() - 0.5);
      indices.forEach((j, k) => {
        features[r * dims + j] = values[k] as number;
      });
      const z = new Float64Array(10);
      head.logitsInto({ indices, values }, z);
      expected.push(softmax(z, Math.fround(0.7)));
    }
    const model = exportHeadToOnnx({
      head,
      temperature: 0.7,
      labels: Array.from({ length: 10 }, (_, i) => `l${i}`),
      backbone: { ...HASH_NGRAMS, dims },
    });
    // when
    const session = await OnnxSession.create(model);
    const out = await session.run({ features: { type: 'float32', data: features, dims: [64, dims] } }, [
      'probabilities',
    ]);
    await session.dispose();
    // then
    const actual = out.probabilities?.data as Float32Array;
    let maxAbsDiff = 0;
    expected.forEach((row, r) => {
      row.forEach((p, c) => {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs((actual[r * 10 + c] as number) - p));
      });
    });
    expect(maxAbsDiff).toBeLessThan(1e-5);
    expect(Object.keys(out)).toEqual(['probabilities']);
  });
});

describe('Predictor', () => {
  const backbone: BackboneConfig = {
    kind: 'hash',
    name: 'hash-ngrams',
    dims: 64,
    wordNgrams: [1, 1],
    charNgrams: [2, 3],
  };
  const labels = ['alpha', 'beta', 'gamma'];
  const head = randomHead(64, 3, 12);
  const bytes = exportHeadToOnnx({ head, temperature: 1.5, labels, backbone });
  const texts = ['first text', 'Second text!', '', 'a fourth one', 'and the fifth'];

  it('reads labels and backbone from the model and predicts featurise -> head -> softmax(z / T)', async () => {
    const predictor = await Predictor.load(bytes, { batchSize: 2 });
    try {
      expect(predictor.labels).toEqual(labels);
      expect(predictor.backbone).toEqual(backbone);
      expect(predictor.temperature).toBe(1.5);
      const probabilities = await predictor.predict(texts);
      const featurizer = new HashNgramsFeaturizer(backbone);
      expect(probabilities).toHaveLength(texts.length);
      texts.forEach((text, i) => {
        const z = new Float64Array(3);
        head.logitsInto(featurizer.featurize(text), z);
        const want = softmax(z, 1.5);
        const got = probabilities[i] as Float32Array;
        expect(got.length).toBe(3);
        want.forEach((p, c) => {
          expect(Math.abs((got[c] as number) - p)).toBeLessThan(1e-6);
        });
      });
      expect(await predictor.predict([])).toEqual([]);
    } finally {
      await predictor.dispose();
    }
  });

  it('refuses input that is not a string', async () => {
    const predictor = await Predictor.load(bytes);
    await expect(predictor.predict([42 as unknown as string])).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await predictor.dispose();
  });
});

describe('runtime memoize', () => {
  it('shares one promise between concurrent loads', async () => {
    let calls = 0;
    const factory = async () => {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return { id: calls };
    };
    const [a, b] = await Promise.all([memoize('shared', factory), memoize('shared', factory)]);
    expect(calls).toBe(1);
    expect(a).toBe(b);
    forget('shared');
    await memoize('shared', factory);
    expect(calls).toBe(2);
    forget('shared');
  });

  it('does not cache a failed load', async () => {
    let calls = 0;
    const failing = async (): Promise<number> => {
      calls++;
      throw new Error(`load ${calls} failed`);
    };
    await expect(memoize('flaky', failing)).rejects.toThrow('load 1 failed');
    await expect(memoize('flaky', failing)).rejects.toThrow('load 2 failed');
    await expect(memoize('flaky', async () => 7)).resolves.toBe(7);
    forget('flaky');
  });

  it('refuses to run a disposed session', async () => {
    const head = new SoftmaxHead(16, 2);
    const session = await OnnxSession.create(
      exportHeadToOnnx({ head, temperature: 1, labels: ['a', 'b'], backbone: { ...HASH_NGRAMS, dims: 16 } }),
    );
    await session.dispose();
    await session.dispose();
    await expect(
      session.run({ features: { type: 'float32', data: new Float32Array(16), dims: [1, 16] } }),
    ).rejects.toThrow(/dispose/);
  });
});
