import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import {
  type BackboneConfig,
  type Example,
  HASH_NGRAMS,
  Predictor,
  stratifiedSplit,
  type TrainStage,
  trainClassifier,
} from '../src/engine/index.js';
import { createRng, type Rng } from '../src/engine/rng.js';

const { onnx } = onnxProto;

const TOPICS: Record<string, string[]> = {
  weather: ['rain', 'sunny', 'forecast', 'storm', 'cloudy', 'snow', 'humid', 'windy'],
  sports: ['match', 'goal', 'team', 'coach', 'league', 'score', 'referee', 'season'],
  cooking: ['recipe', 'oven', 'bake', 'flour', 'simmer', 'garlic', 'sauce', 'dough'],
  finance: ['stock', 'loan', 'interest', 'budget', 'invest', 'bank', 'dividend', 'tax'],
};
const FILLER = [
  'the',
  'a',
  'today',
  'really',
  'we',
  'about',
  'is',
  'was',
  'very',
  'my',
  'this',
  'what',
  'and',
];

const pick = <T>(items: readonly T[], rng: Rng): T => items[rng.int(items.length)] as T;

/** Short sentences: 2 topic words among 3-6 filler words, and a 5% chance of a word from another topic. */
function synthetic(n: number, seed: number): Example[] {
  const rng = createRng(seed);
  const labels = Object.keys(TOPICS);
  return Array.from({ length: n }, () => {
    const label = pick(labels, rng);
    const words = Array.from({ length: 3 + rng.int(4) }, () => pick(FILLER, rng));
    for (let k = 0; k < 2; k++)
      words.splice(rng.int(words.length + 1), 0, pick(TOPICS[label] as string[], rng));
    if (rng.next() < 0.05) words.push(pick(TOPICS[pick(labels, rng)] as string[], rng));
    return { text: words.join(' '), label };
  });
}

const backbone: BackboneConfig = { ...HASH_NGRAMS, dims: 2 ** 12 };
const labels = Object.keys(TOPICS);

describe('trainClassifier on a synthetic topic dataset', () => {
  it('learns it (> 95% on held-out rows), exports a model that ONNX Runtime reproduces, and reports', async () => {
    // given
    const { train, validation } = stratifiedSplit(synthetic(600, 1), { validationFraction: 0.2, seed: 1 });
    const test = synthetic(300, 2);
    const progress: [TrainStage, number][] = [];
    // when
    const result = await trainClassifier(train, validation, {
      backbone,
      labels,
      seed: 3,
      onProgress: (stage, fraction) => progress.push([stage, fraction]),
    });
    // then: the model
    const predictor = await Predictor.load(result.onnx);
    let correct = 0;
    try {
      expect(predictor.labels).toEqual(labels);
      expect(predictor.backbone).toEqual(backbone);
      const probabilities = await predictor.predict(test.map((row) => row.text));
      probabilities.forEach((p, i) => {
        const best = p.indexOf(Math.max(...p));
        if (labels[best] === test[i]?.label) correct++;
        expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      });
    } finally {
      await predictor.dispose();
    }
    expect(correct / test.length).toBeGreaterThan(0.95);
    // the report
    expect(result.labels).toEqual(labels);
    expect(result.parity.rows).toBe(validation.length);
    expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(result.metrics.n).toBe(validation.length);
    expect(result.metrics.accuracy).toBeGreaterThan(0.9);
    expect(result.metrics.confusionMatrix.flat().reduce((a, b) => a + b, 0)).toBe(validation.length);
    expect(result.temperature).toBeGreaterThan(0);
    expect(result.epochs).toBeGreaterThanOrEqual(1);
    expect(result.history[result.epochs - 1]?.validationLoss).toBe(
      Math.min(...result.history.map((h) => h.validationLoss)),
    );
    expect(Object.keys(result.timingsMs)).toEqual(
      expect.arrayContaining(['embeddingMs', 'trainingMs', 'evaluatingMs', 'exportingMs', 'engineMs']),
    );
    // progress runs through the stages in order, fractions within 0..1
    const order: TrainStage[] = ['embedding', 'training', 'evaluating', 'exporting'];
    const stages = progress.map(([stage]) => order.indexOf(stage));
    expect(stages).toEqual([...stages].sort((a, b) => a - b));
    expect(new Set(stages)).toEqual(new Set([0, 1, 2, 3]));
    expect(progress.every(([, f]) => f >= 0 && f <= 1)).toBe(true);
    expect(progress.at(-1)).toEqual(['exporting', 1]);
    // and the ONNX file carries its metadata
    const model = onnx.ModelProto.decode(result.onnx);
    const props = Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
    expect(JSON.parse(props['graft.labels'] as string)).toEqual(labels);
  });

  it("with strategy 'logistic' uses the given hyperparameters and balanced class weights", async () => {
    const { train, validation } = stratifiedSplit(synthetic(200, 4), { seed: 2 });
    const result = await trainClassifier(train, validation, {
      backbone,
      labels,
      strategy: 'logistic',
      hyperparameters: { learningRate: 0.1, maxEpochs: 3, patience: 1, batchSize: undefined },
    });
    expect(result.hyperparameters).toEqual({
      learningRate: 0.1,
      weightDecay: 1e-4,
      batchSize: 128,
      maxEpochs: 3,
      patience: 1,
    });
    expect(result.classWeights).toBe('balanced');
    expect(result.history.length).toBeLessThanOrEqual(3);
  });
});

describe('trainClassifier refuses bad input', () => {
  const rows = synthetic(80, 5);
  const { train, validation } = stratifiedSplit(rows, { seed: 1 });

  it.each([
    [
      'a validation label not among the labels',
      train,
      [...validation, { text: 'x', label: 'poetry' }],
      labels,
      'INVALID_DATASET',
    ],
    [
      'a training label not among the labels',
      [...train, { text: 'x', label: 'poetry' }],
      validation,
      labels,
      'INVALID_DATASET',
    ],
    ['fewer than 2 labels', train, validation, ['weather'], 'DATASET_TOO_SMALL'],
    ['no validation rows', train, [], labels, 'DATASET_TOO_SMALL'],
    ['repeated labels', train, validation, [...labels, 'sports'], 'INVALID_OPTIONS'],
  ])('%s', async (_name, trainRows, validationRows, labelList, code) => {
    await expect(
      trainClassifier(trainRows as Example[], validationRows as Example[], {
        backbone,
        labels: labelList as string[],
      }),
    ).rejects.toMatchObject({ code });
  });

  it('refuses non-finite or non-positive hyperparameters with INVALID_OPTIONS', async () => {
    for (const hyperparameters of [{ learningRate: Number.NaN }, { batchSize: 0 }, { patience: 1.5 }]) {
      await expect(
        trainClassifier(train, validation, { backbone, labels, hyperparameters }),
      ).rejects.toMatchObject({
        code: 'INVALID_OPTIONS',
      });
    }
  });

  it('fails with TRAINING_FAILED when the weights blow up', async () => {
    const error = await trainClassifier(train, validation, {
      backbone,
      labels,
      strategy: 'logistic',
      hyperparameters: { learningRate: 1e38, weightDecay: 0, batchSize: 8, maxEpochs: 10, patience: 10 },
    }).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'TRAINING_FAILED' });
    expect((error as Error).message).toMatch(/learning rate/);
  });

  it('stops on abort with the signal’s reason', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled by the user');
    const promise = trainClassifier(train, validation, {
      backbone,
      labels,
      signal: controller.signal,
      onProgress: (stage) => {
        if (stage === 'training') controller.abort(reason);
      },
    });
    await expect(promise).rejects.toBe(reason);
  });
});
