// Every strategy on every kind of backbone: it learns a small synthetic problem, and the exported model (backbone
// + head in one file) reproduces the trainer's calibrated probabilities in ONNX Runtime.
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backbone, type HeadStrategy, Predictor, trainClassifier } from '../src/engine/index.js';
import {
  accuracy,
  barImages,
  labelled,
  openHashBackbone,
  openImageBackbone,
  openTinyBert,
  type Row,
  splitRows,
  TOPICS,
  topicTexts,
} from './support/engine-data.js';

const { onnx } = onnxProto;

const DESCRIPTIONS = Object.fromEntries(
  Object.entries(TOPICS).map(([label, words]) => [label, words.join(' ')]),
);

interface Case {
  kind: 'hash' | 'text' | 'image';
  open: () => Promise<{ backbone: Backbone; cleanup?: () => Promise<void> }>;
  rows: (n: number, seed: number) => Row[];
  labels: string[];
  strategies: HeadStrategy[];
  /** Labelled rows (3/4 training, 1/4 validation). */
  n: number;
  /** Least test accuracy per strategy. */
  least: Partial<Record<HeadStrategy, number>>;
}

const imageLabels = ['bar-0', 'bar-1', 'bar-2', 'bar-3'];
const CASES: Case[] = [
  {
    kind: 'hash',
    open: async () => ({ backbone: await openHashBackbone() }),
    rows: topicTexts,
    labels: Object.keys(TOPICS),
    strategies: ['zero-shot', 'centroid', 'logistic', 'mlp'],
    n: 120,
    least: { 'zero-shot': 0.9, centroid: 0.95, logistic: 0.95, mlp: 0.95 },
  },
  {
    kind: 'text',
    open: () => openTinyBert(),
    rows: topicTexts,
    labels: Object.keys(TOPICS),
    strategies: ['zero-shot', 'centroid', 'logistic', 'mlp'],
    n: 240,
    // The tiny BERT's weights are random: its mean-pooled embeddings keep the words, but mixed with the filler
    // words far less separably than a trained model's would (chance is 1/3).
    least: { 'zero-shot': 0.5, centroid: 0.6, logistic: 0.75, mlp: 0.75 },
  },
  {
    kind: 'image',
    open: async () => ({ backbone: await openImageBackbone({ cutAt: 'flat' }) }),
    rows: (n, seed) => barImages(n, seed, { classes: 4, noise: 50 }),
    labels: imageLabels,
    strategies: ['centroid', 'logistic', 'mlp'],
    n: 120,
    least: { centroid: 0.9, logistic: 0.9, mlp: 0.9 },
  },
];

describe.each(CASES)('$kind backbone', ({ kind, open, rows, labels, strategies, n, least }) => {
  let backbone: Backbone;
  let cleanup: (() => Promise<void>) | undefined;
  const { train, validation } = splitRows(rows(n, 1));
  const test = rows(90, 2);
  beforeAll(async () => {
    ({ backbone, cleanup } = await open());
  });
  afterAll(async () => {
    await backbone.dispose();
    await cleanup?.();
  });

  it.each(strategies)(
    '%s learns it, and ONNX Runtime reproduces the whole model within 1e-4',
    async (strategy) => {
      // when
      const result = await trainClassifier(
        await labelled(backbone, train),
        await labelled(backbone, validation),
        {
          backbone,
          labels,
          strategy,
          labelDescriptions: DESCRIPTIONS,
          validationInputs: validation.map((r) => r.input),
        },
      );
      // then: parity through the raw inputs (texts, images), and the head learnt
      expect(result.strategy).toBe(strategy);
      expect(result.parity.rows).toBe(validation.length);
      expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
      const predictor = await Predictor.load(result.onnx);
      const score = accuracy(await predictor.predict(test.map((r) => r.input)), test, labels);
      await predictor.dispose();
      expect(score).toBeGreaterThanOrEqual(least[strategy] ?? 1);
      // the model is one file: for dense backbones, its inputs are the backbone's own
      const model = onnx.ModelProto.decode(result.onnx);
      const inputs = (model.graph?.input ?? []).map((i) => i.name);
      const initializers = new Set((model.graph?.initializer ?? []).map((t) => t.name));
      const dataInputs = inputs.filter((name) => !initializers.has(name));
      expect(dataInputs).toEqual(
        kind === 'hash'
          ? ['features']
          : kind === 'text'
            ? ['input_ids', 'attention_mask', 'token_type_ids']
            : ['img'],
      );
      expect(model.graph?.output?.map((o) => o.name)).toEqual(['logits', 'probabilities']);
      if (strategy === 'zero-shot' || strategy === 'centroid') expect(result.epochs).toBe(0);
      else expect(result.epochs).toBeGreaterThan(0);
    },
  );
});

describe('zero-shot on the tiny BERT', () => {
  it('scores softmax(20 cos(text, description) / T), as computed by hand from the embeddings', async () => {
    // given
    const { backbone, cleanup } = await openTinyBert();
    const labels = Object.keys(TOPICS);
    const { validation } = splitRows(topicTexts(30, 3), 0.5);
    const texts = ['the cat sat on my mat', 'refund my money please', 'i love this movie'];
    try {
      // when
      const result = await trainClassifier(
        { features: await backbone.extract([]), labels: [] },
        await labelled(backbone, validation),
        {
          backbone,
          labels,
          strategy: 'zero-shot',
          labelDescriptions: DESCRIPTIONS,
          validationInputs: validation.map((r) => r.input),
        },
      );
      const predictor = await Predictor.load(result.onnx);
      const got = await predictor.predict(texts);
      await predictor.dispose();
      // then: cosines of the backbone's own embeddings, in float64
      const embed = async (inputs: string[]) => {
        const m = await backbone.extract(inputs);
        if (m.kind !== 'dense') throw new Error('dense expected');
        return inputs.map((_, i) => Array.from(m.data.subarray(i * m.dims, (i + 1) * m.dims)));
      };
      const unit = (v: number[]) => {
        const n = Math.hypot(...v);
        return v.map((x) => x / n);
      };
      const descriptions = (await embed(labels.map((l) => DESCRIPTIONS[l] as string))).map(unit);
      const rows = (await embed(texts)).map(unit);
      rows.forEach((x, i) => {
        const logits = descriptions.map(
          (d) => (20 * d.reduce((s, v, j) => s + v * (x[j] as number), 0)) / result.temperature,
        );
        const max = Math.max(...logits);
        const e = logits.map((z) => Math.exp(z - max));
        const sum = e.reduce((a, b) => a + b, 0);
        e.forEach((v, c) => {
          expect(Math.abs((got[i]?.[c] as number) - v / sum)).toBeLessThan(1e-4);
        });
      });
      expect(result.hyperparameters).toEqual({});
      expect(result.candidates).toEqual([
        expect.objectContaining({ strategy: 'zero-shot', crossValidated: false, hyperparameters: {} }),
      ]);
    } finally {
      await backbone.dispose();
      await cleanup();
    }
  });
});

describe('self-training', () => {
  it('pseudo-labels confident unlabelled rows, retrains while validation holds, and records it; it helps here', async () => {
    // given: 2 labelled images per class of a noisy problem, 600 unlabelled ones
    const backbone = await openImageBackbone({ cutAt: 'img', side: 6 });
    const labels = Array.from({ length: 6 }, (_, c) => `bar-${c}`);
    const options = { classes: 6, side: 6, noise: 100 };
    const train = barImages(12, 1, options);
    const validation = barImages(60, 101, options);
    const pool = barImages(600, 201, options);
    const test = barImages(600, 301, options);
    const trainSet = await labelled(backbone, train);
    const validationSet = await labelled(backbone, validation);
    const unlabelled = await backbone.extract(pool.map((r) => r.input));
    const run = async (selfTraining: boolean) => {
      const result = await trainClassifier(trainSet, validationSet, {
        backbone,
        labels,
        strategy: 'logistic',
        validationInputs: validation.map((r) => r.input),
        unlabelled,
        ...(selfTraining ? {} : { selfTraining: false as const }),
      });
      const predictor = await Predictor.load(result.onnx);
      const score = accuracy(await predictor.predict(test.map((r) => r.input)), test, labels);
      await predictor.dispose();
      return { result, score };
    };
    // when
    const without = await run(false);
    const withSelfTraining = await run(true);
    // then
    expect(without.result.selfTraining).toBeUndefined();
    const report = withSelfTraining.result.selfTraining;
    expect(report?.rounds).toBeGreaterThanOrEqual(1);
    expect(report?.rowsAdded).toBeGreaterThan(100);
    expect(report?.macroF1ByRound.length).toBeGreaterThanOrEqual((report?.rounds ?? 0) + 1);
    const kept = report?.macroF1ByRound[report.rounds] as number;
    expect(kept).toBeGreaterThanOrEqual(report?.macroF1ByRound[0] as number);
    expect(withSelfTraining.result.metrics.macroF1).toBeCloseTo(kept, 10);
    expect(withSelfTraining.score).toBeGreaterThan(without.score + 0.1);
    expect(withSelfTraining.result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    await backbone.dispose();
  });
});
