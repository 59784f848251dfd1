import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Backbone,
  type ImageBackboneConfig,
  type LabelledFeatures,
  openBackbone,
  Predictor,
  selectRows,
  stratifiedSplit,
  type TrainStage,
  trainClassifier,
} from '../src/engine/index.js';
import { GraftError } from '../src/errors.js';
import {
  accuracy,
  barImages,
  labelled,
  openHashBackbone,
  openImageBackbone,
  type Row,
  smallCnn,
  splitRows,
  TOPICS,
  topicTexts,
} from './support/engine-data.js';

const { onnx } = onnxProto;
const labels = Object.keys(TOPICS);

let hash: Backbone;
beforeAll(async () => {
  hash = await openHashBackbone();
});

describe('trainClassifier on hashed texts', () => {
  it('learns them with auto (> 95% on held-out rows), reports every candidate, exports a model ONNX Runtime reproduces', async () => {
    // given
    const { train, validation } = stratifiedSplit(topicTexts(300, 1), { validationFraction: 0.2, seed: 1 });
    const test = topicTexts(150, 2);
    const progress: [TrainStage, number][] = [];
    // when
    const result = await trainClassifier(await labelled(hash, train), await labelled(hash, validation), {
      backbone: hash,
      labels,
      seed: 3,
      validationInputs: validation.map((r) => r.input),
      onProgress: (stage, fraction) => progress.push([stage, fraction]),
    });
    // then: the model
    const predictor = await Predictor.load(result.onnx);
    try {
      expect(predictor.labels).toEqual(labels);
      expect(predictor.backbone).toEqual(hash.config);
      expect(predictor.strategy).toBe(result.strategy);
      const probabilities = await predictor.predict(test.map((row) => row.input));
      expect(accuracy(probabilities, test, labels)).toBeGreaterThan(0.95);
      for (const p of probabilities) expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    } finally {
      await predictor.dispose();
    }
    // the report: every applicable strategy was tried; the kept one is the linear probe's best configuration, or
    // another strategy's that beat it on the validation rows
    expect(new Set(result.candidates.map((c) => c.strategy))).toEqual(
      new Set(['zero-shot', 'centroid', 'logistic', 'mlp']),
    );
    expect(result.candidates.every((c) => !c.crossValidated)).toBe(true);
    const selection = result.selection;
    if (!selection) throw new Error('auto reports its selection');
    const kept = result.candidates[selection.kept];
    const probe = result.candidates[selection.incumbent ?? -1];
    expect(kept?.strategy).toBe(result.strategy);
    const logistic = result.candidates.filter((c) => c.strategy === 'logistic');
    expect(probe?.macroF1).toBe(Math.max(...logistic.map((c) => c.macroF1)));
    expect(kept?.macroF1).toBeGreaterThanOrEqual(probe?.macroF1 as number);
    expect(selection.reason).not.toBe('');
    expect(result.parity.rows).toBe(validation.length);
    expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(result.metrics.n).toBe(validation.length);
    expect(result.metrics.accuracy).toBeGreaterThan(0.9);
    expect(result.temperature).toBeGreaterThan(0);
    expect(Object.keys(result.timingsMs)).toEqual(
      expect.arrayContaining(['trainingMs', 'evaluatingMs', 'exportingMs', 'engineMs']),
    );
    // progress runs through the stages in order, fractions within 0..1
    const order: TrainStage[] = ['training', 'evaluating', 'exporting'];
    const stages = progress.map(([stage]) => order.indexOf(stage));
    expect(stages).toEqual([...stages].sort((a, b) => a - b));
    expect(new Set(stages)).toEqual(new Set([0, 1, 2]));
    expect(progress.every(([, f]) => f >= 0 && f <= 1)).toBe(true);
    expect(progress.at(-1)).toEqual(['exporting', 1]);
    // and the ONNX file carries its metadata
    const model = onnx.ModelProto.decode(result.onnx);
    const props = Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
    expect(JSON.parse(props['graft.labels'] as string)).toEqual(labels);
    expect(props['graft.strategy']).toBe(result.strategy);
  });

  it("with strategy 'logistic' uses the given hyperparameters and balanced class weights, and nothing else", async () => {
    const { train, validation } = stratifiedSplit(topicTexts(120, 4), { seed: 2 });
    const result = await trainClassifier(await labelled(hash, train), await labelled(hash, validation), {
      backbone: hash,
      labels,
      strategy: 'logistic',
      hyperparameters: { learningRate: 0.1, maxEpochs: 3, patience: 1, batchSize: undefined },
    });
    expect(result.strategy).toBe('logistic');
    expect(result.hyperparameters).toEqual({
      learningRate: 0.1,
      weightDecay: 1e-4,
      batchSize: 128,
      maxEpochs: 3,
      patience: 1,
    });
    expect(result.classWeights).toBe('balanced');
    expect(result.history.length).toBeLessThanOrEqual(3);
    expect(result.candidates).toHaveLength(1);
    // Without the texts, the parity check feeds the hashed features themselves.
    expect(result.parity.rows).toBe(validation.length);
  });
});

describe('trainClassifier cross-validates when labels are few', () => {
  it('scores every candidate by stratified 5-fold CV on the training rows and refits the winner', async () => {
    // given: 12 training rows per label (< 50)
    const rows = topicTexts(54, 5);
    const { train, validation } = splitRows(rows, 12 / 18);
    // when
    const result = await trainClassifier(await labelled(hash, train), await labelled(hash, validation), {
      backbone: hash,
      labels,
      validationInputs: validation.map((r) => r.input),
    });
    // then
    expect(result.candidates.length).toBeGreaterThanOrEqual(4);
    expect(result.candidates.every((c) => c.crossValidated)).toBe(true);
    expect(result.metrics.n).toBe(validation.length);
    expect(result.metrics.accuracy).toBeGreaterThan(0.8);
    expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  });
});

describe('trainClassifier refuses bad input with a code that says what to fix', () => {
  const rows = topicTexts(60, 5);
  const { train, validation } = splitRows(rows);
  let trainSet: LabelledFeatures;
  let validationSet: LabelledFeatures;
  beforeAll(async () => {
    trainSet = await labelled(hash, train);
    validationSet = await labelled(hash, validation);
  });
  const failure = (promise: Promise<unknown>) =>
    promise.then(() => new Error('resolved')).catch((e: unknown) => e);

  it.each([
    ['a validation label not among the labels', 'validation', 'poetry', 'INVALID_DATASET', /"poetry"/],
    ['a training label not among the labels', 'training', 'poetry', 'INVALID_DATASET', /"poetry"/],
  ] as const)('%s', async (_name, set, label, code, message) => {
    const change = (s: LabelledFeatures) => ({ ...s, labels: [...s.labels.slice(0, -1), label] });
    const error = await failure(
      trainClassifier(
        set === 'training' ? change(trainSet) : trainSet,
        set === 'validation' ? change(validationSet) : validationSet,
        { backbone: hash, labels },
      ),
    );
    expect(error).toMatchObject({ code });
    expect((error as Error).message).toMatch(message);
  });

  it('fewer than 2 labels, repeated labels, no validation rows', async () => {
    await expect(
      trainClassifier(trainSet, validationSet, { backbone: hash, labels: ['pets'] }),
    ).rejects.toMatchObject({
      code: 'DATASET_TOO_SMALL',
    });
    await expect(
      trainClassifier(trainSet, validationSet, { backbone: hash, labels: [...labels, 'pets'] }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
    const empty = { features: selectRows(validationSet.features, []), labels: [] };
    await expect(trainClassifier(trainSet, empty, { backbone: hash, labels })).rejects.toMatchObject({
      code: 'DATASET_TOO_SMALL',
    });
  });

  it('a class that vanished from the validation split: DATASET_TOO_SMALL naming it', async () => {
    const keep = validation.flatMap((r, i) => (r.label === 'films' ? [] : [i]));
    const without = {
      features: selectRows(validationSet.features, keep),
      labels: keep.map((i) => validationSet.labels[i] as string),
    };
    const error = await failure(trainClassifier(trainSet, without, { backbone: hash, labels }));
    expect(error).toMatchObject({
      code: 'DATASET_TOO_SMALL',
      details: { labels: ['films'], set: 'validation' },
    });
    expect((error as Error).message).toContain('"films"');
  });

  it('a label without training rows: DATASET_TOO_SMALL naming it (zero-shot needs none)', async () => {
    const error = await failure(
      trainClassifier(trainSet, validationSet, { backbone: hash, labels: [...labels, 'sports'] }),
    );
    expect(error).toMatchObject({
      code: 'DATASET_TOO_SMALL',
      details: { labels: ['sports'], set: 'training' },
    });
    expect((error as Error).message).toMatch(/"sports" has no training rows.*zero-shot/);
  });

  it('NaN or infinite features: TRAINING_FAILED naming the set and row', async () => {
    const dense = await openImageBackbone({ cutAt: 'img' });
    const images = barImages(24, 1);
    const { train: tr, validation: va } = splitRows(images);
    const trainDense = await labelled(dense, tr);
    const validationDense = await labelled(dense, va);
    if (trainDense.features.kind !== 'dense') throw new Error('dense features expected');
    trainDense.features.data[3 * dense.dims + 5] = Number.NaN;
    const error = await failure(
      trainClassifier(trainDense, validationDense, {
        backbone: dense,
        labels: ['bar-0', 'bar-1', 'bar-2'],
        validationInputs: va.map((r) => r.input),
      }),
    );
    expect(error).toMatchObject({ code: 'TRAINING_FAILED', details: { set: 'training', row: 3 } });
    await dense.dispose();
  });

  it('a dense backbone without the raw validation inputs: INVALID_OPTIONS', async () => {
    const dense = await openImageBackbone({ cutAt: 'img' });
    const { train: tr, validation: va } = splitRows(barImages(24, 1));
    const error = await failure(
      trainClassifier(await labelled(dense, tr), await labelled(dense, va), {
        backbone: dense,
        labels: ['bar-0', 'bar-1', 'bar-2'],
      }),
    );
    expect(error).toMatchObject({ code: 'INVALID_OPTIONS' });
    expect((error as Error).message).toContain('validationInputs');
    await dense.dispose();
  });

  it('zero-shot on an image backbone, a configuration in place of a backbone: INVALID_OPTIONS', async () => {
    const dense = await openImageBackbone({ cutAt: 'img' });
    const { train: tr, validation: va } = splitRows(barImages(24, 1));
    await expect(
      trainClassifier(await labelled(dense, tr), await labelled(dense, va), {
        backbone: dense,
        labels: ['bar-0', 'bar-1', 'bar-2'],
        strategy: 'zero-shot',
        validationInputs: va.map((r) => r.input),
      }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
    await dense.dispose();
    await expect(
      trainClassifier(trainSet, validationSet, { backbone: hash.config as unknown as Backbone, labels }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });

  it('refuses non-finite or non-positive hyperparameters and an unknown strategy with INVALID_OPTIONS', async () => {
    for (const hyperparameters of [
      { learningRate: Number.NaN },
      { batchSize: 0 },
      { patience: 1.5 },
      { hiddenSize: -1 },
      { dropout: 1 },
    ]) {
      await expect(
        trainClassifier(trainSet, validationSet, { backbone: hash, labels, hyperparameters }),
      ).rejects.toMatchObject({
        code: 'INVALID_OPTIONS',
      });
    }
    await expect(
      trainClassifier(trainSet, validationSet, { backbone: hash, labels, strategy: 'magic' as never }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });

  it('fails with TRAINING_FAILED when the weights blow up', async () => {
    const error = await failure(
      trainClassifier(trainSet, validationSet, {
        backbone: hash,
        labels,
        strategy: 'logistic',
        hyperparameters: { learningRate: 1e38, weightDecay: 0, batchSize: 8, maxEpochs: 10, patience: 10 },
      }),
    );
    expect(error).toBeInstanceOf(GraftError);
    expect(error).toMatchObject({ code: 'TRAINING_FAILED' });
    expect((error as Error).message).toMatch(/learning rate/);
  });

  it('stops on abort with the signal’s reason', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled by the user');
    const promise = trainClassifier(trainSet, validationSet, {
      backbone: hash,
      labels,
      signal: controller.signal,
      onProgress: (stage) => {
        if (stage === 'training') controller.abort(reason);
      },
    });
    await expect(promise).rejects.toBe(reason);
  });
});

describe('backbone errors that reach a job', () => {
  it('an image of the wrong size with strictSize: INVALID_DATASET naming the image', async () => {
    const backbone = await openImageBackbone({ cutAt: 'img', strictSize: true });
    const rows: Row[] = [...barImages(3, 1), ...barImages(1, 2, { side: 5 })];
    const error = await backbone
      .extract(
        rows.map((r) => r.input),
        { batchSize: 2 },
      )
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'INVALID_DATASET', details: { index: 3 } });
    expect((error as Error).message).toBe(
      'Image 3: image is 5x5; this backbone expects 4x4 (width x height).',
    );
    await backbone.dispose();
  });

  it('a cut tensor that does not exist: BACKBONE_NOT_FOUND naming candidates', async () => {
    // given a stored configuration whose cut tensor is not in the model
    const model = smallCnn(3);
    const backbone = await openImageBackbone({ seed: 3 });
    const config = { ...(backbone.config as ImageBackboneConfig), cutAt: 'pool5' };
    await backbone.dispose();
    // when
    const error = await openBackbone(config, { model }).catch((e: unknown) => e);
    // then
    expect(error).toMatchObject({ code: 'BACKBONE_NOT_FOUND' });
    expect((error as Error).message).toContain('"flat"');
  });
});

afterAll(async () => {
  await hash.dispose();
});
