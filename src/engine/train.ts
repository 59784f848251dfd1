import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GraftError } from '../errors.js';
import { type BackboneConfig, parseBackbone } from './backbone.js';
import { fitTemperature, softmax } from './calibration.js';
import { exportHeadToOnnx } from './export-onnx.js';
import { HashNgramsFeaturizer, type SparseVector } from './hash-ngrams.js';
import { argmax, computeMetrics, type Metrics } from './metrics.js';
import { Predictor } from './predictor.js';
import { balancedClassWeights } from './softmax-head.js';
import {
  assertFinite,
  type EpochRecord,
  type FitLogisticResult,
  fitLogistic,
  type Hyperparameters,
  type SparseDataset,
} from './train-logistic.js';

export interface Example {
  text: string;
  label: string;
}

/**
 * `logistic`: one linear softmax head with the given (or default) settings; `auto`: logistic with a small
 * search over class weights, learning rate and weight decay, by validation macro-F1 (see AUTO_SEARCH).
 */
export type Strategy = 'auto' | 'logistic';

export type TrainStage = 'embedding' | 'training' | 'evaluating' | 'exporting';

export interface TrainOptions {
  backbone: BackboneConfig;
  /** Label order = output column order of the model. */
  labels: string[];
  /** @default 'auto' */
  strategy?: Strategy;
  /** Overrides DEFAULT_HYPERPARAMETERS; with `auto`, a given learning rate or weight decay is not searched. */
  hyperparameters?: Partial<Hyperparameters>;
  /** Class weights in the loss: `logistic` uses 'balanced' unless told; `auto` tries both unless told. */
  classWeights?: ClassWeighting;
  /** @default 42 */
  seed?: number;
  /** `fraction` runs 0..1 within each stage. */
  onProgress?: (stage: TrainStage, fraction: number, message?: string) => void;
  /** Checked between batches and epochs; on abort, `signal.reason` is thrown. */
  signal?: AbortSignal;
}

export interface TrainedClassifier {
  onnx: Uint8Array;
  labels: string[];
  /** On the validation rows, with the calibrated probabilities. */
  metrics: Metrics;
  hyperparameters: Hyperparameters;
  /** The class weights the kept model was trained with. */
  classWeights: ClassWeighting;
  temperature: number;
  /** The epoch whose weights were kept (lowest validation loss); `history` has every epoch run. */
  epochs: number;
  /** Every epoch run; losses are class-weighted mean cross-entropies, the validation one the early-stopping criterion. */
  history: { epoch: number; trainLoss: number; validationLoss: number }[];
  /** Largest |ONNX Runtime - trainer| over the validation probabilities. */
  parity: { maxAbsDiff: number; rows: number };
  timingsMs: Record<string, number>;
}

/** Defaults tuned on trec, banking77 and sms-spam with the default `hash-ngrams` backbone. */
export const DEFAULT_HYPERPARAMETERS: Hyperparameters = {
  learningRate: 0.05,
  weightDecay: 1e-4,
  batchSize: 128,
  maxEpochs: 40,
  patience: 3,
};

/** How each class's loss is weighed: 'balanced' = n / (k * count), as scikit-learn; 'none' = 1. */
export type ClassWeighting = 'balanced' | 'none';

/**
 * The alternatives `auto` tries after the defaults ('balanced' class weights, DEFAULT_HYPERPARAMETERS), one
 * setting at a time, keeping each that raises the validation macro-F1: 3 trainings in all. Settings the
 * caller fixed are not searched.
 */
export const AUTO_SEARCH: {
  readonly classWeights: readonly ClassWeighting[];
  readonly learningRate: readonly number[];
  readonly weightDecay: readonly number[];
} = {
  classWeights: ['none'],
  learningRate: [0.1],
  weightDecay: [],
};

export const PARITY_TOLERANCE = 1e-4;

/** dims x labels of the largest head trained: 1 GiB of float32 in the ONNX file (protobuf stops at 2 GiB). */
export const MAX_HEAD_WEIGHTS = 2 ** 28;

/**
 * Trains a classification head on a frozen backbone and exports it as one ONNX file, after checking that
 * ONNX Runtime reproduces the trainer's calibrated probabilities on the validation rows.
 */
export async function trainClassifier(
  train: readonly Example[],
  validation: readonly Example[],
  options: TrainOptions,
): Promise<TrainedClassifier> {
  const { strategy = 'auto', hyperparameters = {}, seed = 42, onProgress, signal } = options;
  const started = performance.now();
  const timingsMs: Record<string, number> = {};
  const backbone = parseBackbone(options.backbone);
  const labels = checkLabels(options.labels);
  const hp = checkHyperparameters(hyperparameters);
  if (strategy !== 'auto' && strategy !== 'logistic') {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Unknown strategy ${JSON.stringify(strategy)}: use "auto" or "logistic".`,
    );
  }
  if (backbone.dims * labels.length > MAX_HEAD_WEIGHTS) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `A head of ${backbone.dims} x ${labels.length} weights is too big for one ONNX file (at most ${MAX_HEAD_WEIGHTS}): use a backbone with fewer dims.`,
    );
  }
  const labelIndex = new Map(labels.map((label, i) => [label, i]));
  const trainY = labelIndices(train, labelIndex, 'training');
  const validationY = labelIndices(validation, labelIndex, 'validation');
  if (train.length === 0 || validation.length === 0) {
    throw new GraftError(
      'DATASET_TOO_SMALL',
      `Training needs rows in both sets; got ${train.length} training and ${validation.length} validation rows. Use stratifiedSplit to make a validation set.`,
    );
  }
  if (new Set(trainY).size < 2) {
    throw new GraftError('DATASET_TOO_SMALL', 'The training rows need at least 2 different labels.');
  }
  signal?.throwIfAborted();

  // Embedding
  let t0 = performance.now();
  const featurizer = new HashNgramsFeaturizer(backbone);
  const total = train.length + validation.length;
  const progressEvery = Math.max(1, Math.floor(total / 20));
  let done = 0;
  const featurize = async (rows: readonly Example[]): Promise<SparseVector[]> => {
    const out: SparseVector[] = [];
    for (const row of rows) {
      out.push(featurizer.featurize(row.text));
      if (++done % progressEvery === 0) {
        onProgress?.('embedding', done / total);
        await yieldToEventLoop();
        signal?.throwIfAborted();
      }
    }
    return out;
  };
  onProgress?.('embedding', 0, `${total} texts`);
  const trainSet: SparseDataset = { rows: await featurize(train), labels: Int32Array.from(trainY) };
  const validationSet: SparseDataset = {
    rows: await featurize(validation),
    labels: Int32Array.from(validationY),
  };
  onProgress?.('embedding', 1);
  timingsMs.embeddingMs = performance.now() - t0;

  // Training: the defaults first; `auto` then tries each alternative setting, one at a time (coordinate
  // search), keeping whatever raises the validation macro-F1.
  t0 = performance.now();
  const alternatives = strategy === 'logistic' ? [] : searchSteps(hyperparameters, options.classWeights);
  const count = 1 + alternatives.length;
  const trainCandidate = async (candidate: Candidate, index: number): Promise<Trial> => {
    const { hp: candidateHp } = candidate;
    const describe = `lr=${candidateHp.learningRate} wd=${candidateHp.weightDecay} class weights ${candidate.classWeights}`;
    onProgress?.('training', index / count, `candidate ${index + 1}/${count}: ${describe}`);
    const fit = await fitLogistic(trainSet, validationSet, {
      dims: backbone.dims,
      classes: labels.length,
      hyperparameters: candidateHp,
      classWeights:
        candidate.classWeights === 'balanced'
          ? balancedClassWeights(trainSet.labels, labels.length)
          : new Float64Array(labels.length).fill(1),
      seed,
      signal,
      onEpoch: (record: EpochRecord) =>
        onProgress?.(
          'training',
          (index + record.epoch / candidateHp.maxEpochs) / count,
          `${describe}, epoch ${record.epoch}: train loss ${record.trainLoss.toFixed(4)}, validation loss ${record.validationLoss.toFixed(4)}`,
        ),
    });
    const predicted = fit.head.logits(validationSet.rows).map((z) => oneHot(argmax(z), labels.length));
    return { fit, candidate, macroF1: computeMetrics(validationY, predicted, labels).macroF1 };
  };
  let best = await trainCandidate({ hp, classWeights: options.classWeights ?? 'balanced' }, 0);
  for (const [i, change] of alternatives.entries()) {
    const trial = await trainCandidate(change(best.candidate), i + 1);
    // On a tie the defaults stay.
    if (trial.macroF1 > best.macroF1) best = trial;
  }
  const head = best.fit.head;
  assertFinite(head.weights, 'the trained weights');
  assertFinite(head.bias, 'the trained biases');
  onProgress?.(
    'training',
    1,
    `kept lr=${best.candidate.hp.learningRate} wd=${best.candidate.hp.weightDecay} class weights ${best.candidate.classWeights}, epoch ${best.fit.bestEpoch}`,
  );
  timingsMs.trainingMs = performance.now() - t0;

  // Evaluating: temperature scaling on the validation logits, then metrics of the calibrated probabilities.
  t0 = performance.now();
  onProgress?.('evaluating', 0);
  const validationLogits = head.logits(validationSet.rows);
  // Smoothed targets: a validation set the model gets all right would otherwise send T to its floor (see
  // plattTargets). The model stores T as float32: calibrate with exactly that value.
  const temperature = Math.fround(
    fitTemperature(validationLogits, validationSet.labels, { smoothTargets: true }),
  );
  if (!Number.isFinite(temperature) || temperature <= 0) {
    throw new GraftError(
      'TRAINING_FAILED',
      `Temperature scaling gave T = ${temperature}; the logits are not finite.`,
    );
  }
  const calibrated = validationLogits.map((z) => softmax(z, temperature));
  const metrics = computeMetrics(validationY, calibrated, labels);
  onProgress?.(
    'evaluating',
    1,
    `accuracy ${metrics.accuracy.toFixed(4)}, macro-F1 ${metrics.macroF1.toFixed(4)}`,
  );
  timingsMs.evaluatingMs = performance.now() - t0;

  // Exporting, and the parity check through ONNX Runtime.
  t0 = performance.now();
  onProgress?.('exporting', 0);
  const onnx = exportHeadToOnnx({ head, temperature, labels, backbone });
  onProgress?.('exporting', 0.5, `${onnx.length} bytes; parity check`);
  signal?.throwIfAborted();
  const parity = await checkParity(
    onnx,
    validation.map((row) => row.text),
    calibrated,
  );
  onProgress?.('exporting', 1, `parity max |diff| ${parity.maxAbsDiff.toExponential(2)}`);
  timingsMs.exportingMs = performance.now() - t0;
  timingsMs.engineMs = performance.now() - started;

  return {
    onnx,
    labels,
    metrics,
    hyperparameters: best.candidate.hp,
    classWeights: best.candidate.classWeights,
    temperature,
    epochs: best.fit.bestEpoch,
    history: best.fit.history,
    parity,
    timingsMs,
  };
}

/** Runs the exported bytes through ONNX Runtime and compares with the trainer's own probabilities. */
async function checkParity(
  onnx: Uint8Array,
  texts: readonly string[],
  expected: readonly Float64Array[],
): Promise<{ maxAbsDiff: number; rows: number }> {
  const predictor = await Predictor.load(onnx);
  let maxAbsDiff = 0;
  try {
    const actual = await predictor.predict(texts);
    actual.forEach((row, i) => {
      const want = expected[i] as Float64Array;
      for (let c = 0; c < want.length; c++) {
        const diff = Math.abs((row[c] as number) - (want[c] as number));
        // NaN never compares greater: count it as an infinite difference.
        maxAbsDiff = Number.isNaN(diff) ? Infinity : Math.max(maxAbsDiff, diff);
      }
    });
  } finally {
    await predictor.dispose();
  }
  if (!(maxAbsDiff <= PARITY_TOLERANCE)) {
    throw new GraftError(
      'PARITY_CHECK_FAILED',
      `ONNX Runtime and the trainer disagree on the validation probabilities by up to ${maxAbsDiff} (tolerance ${PARITY_TOLERANCE}).`,
      { details: { maxAbsDiff, tolerance: PARITY_TOLERANCE, rows: texts.length } },
    );
  }
  return { maxAbsDiff, rows: texts.length };
}

/** The changes `auto` tries after the first training, in order, minus the settings the caller fixed. */
function searchSteps(
  fixed: Partial<Hyperparameters>,
  classWeights: ClassWeighting | undefined,
): ((c: Candidate) => Candidate)[] {
  const steps: ((c: Candidate) => Candidate)[] = [];
  if (classWeights === undefined) {
    for (const w of AUTO_SEARCH.classWeights) steps.push((c) => ({ ...c, classWeights: w }));
  }
  if (fixed.learningRate === undefined) {
    for (const lr of AUTO_SEARCH.learningRate)
      steps.push((c) => ({ ...c, hp: { ...c.hp, learningRate: lr } }));
  }
  if (fixed.weightDecay === undefined) {
    for (const wd of AUTO_SEARCH.weightDecay) steps.push((c) => ({ ...c, hp: { ...c.hp, weightDecay: wd } }));
  }
  return steps;
}

interface Candidate {
  hp: Hyperparameters;
  classWeights: ClassWeighting;
}

interface Trial {
  fit: FitLogisticResult;
  candidate: Candidate;
  macroF1: number;
}

function checkLabels(labels: unknown): string[] {
  if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string' && l.length > 0)) {
    throw new GraftError('INVALID_OPTIONS', 'labels must be an array of non-empty strings.');
  }
  if (labels.length < 2) {
    throw new GraftError('DATASET_TOO_SMALL', `A classifier needs at least 2 labels; got ${labels.length}.`);
  }
  if (new Set(labels).size !== labels.length) {
    throw new GraftError('INVALID_OPTIONS', 'labels must be distinct: remove the repeated label names.');
  }
  return [...labels];
}

/** The defaults, overridden by the given values (undefined ones and unknown keys are ignored), checked. */
function checkHyperparameters(given: Partial<Hyperparameters>): Hyperparameters {
  const hp = { ...DEFAULT_HYPERPARAMETERS };
  for (const key of Object.keys(hp) as (keyof Hyperparameters)[]) {
    const value = given[key];
    if (value !== undefined) hp[key] = value;
  }
  const problems: string[] = [];
  const positive = (name: keyof Hyperparameters) => {
    if (!(Number.isFinite(hp[name]) && hp[name] > 0)) problems.push(`${name} must be a positive number`);
  };
  const positiveInteger = (name: keyof Hyperparameters) => {
    if (!(Number.isInteger(hp[name]) && hp[name] > 0)) problems.push(`${name} must be a positive integer`);
  };
  positive('learningRate');
  if (!(Number.isFinite(hp.weightDecay) && hp.weightDecay >= 0 && hp.learningRate * hp.weightDecay < 1)) {
    problems.push('weightDecay must be >= 0 with learningRate * weightDecay < 1');
  }
  positiveInteger('batchSize');
  positiveInteger('maxEpochs');
  positiveInteger('patience');
  if (problems.length > 0) {
    throw new GraftError('INVALID_OPTIONS', `Invalid hyperparameters: ${problems.join('; ')}.`, {
      details: { problems },
    });
  }
  return hp;
}

function labelIndices(rows: readonly Example[], labelIndex: Map<string, number>, set: string): number[] {
  const unknown = new Set<string>();
  const out = rows.map((row, i) => {
    if (typeof row?.text !== 'string') {
      throw new GraftError('INVALID_DATASET', `The ${set} row ${i} has no text string.`);
    }
    const index = labelIndex.get(row.label);
    if (index === undefined) {
      unknown.add(String(row.label));
      return -1;
    }
    return index;
  });
  if (unknown.size > 0) {
    const names = [...unknown].slice(0, 10).map((l) => JSON.stringify(l));
    throw new GraftError(
      'INVALID_DATASET',
      `The ${set} rows have labels that are not among the task's labels: ${names.join(', ')}${unknown.size > 10 ? ', ...' : ''}. Expected one of ${labelIndex.size} labels; fix the rows or add the labels.`,
      { details: { set, unknownLabels: [...unknown].slice(0, 100) } },
    );
  }
  return out;
}

function oneHot(index: number, size: number): Float64Array {
  const out = new Float64Array(size);
  out[index] = 1;
  return out;
}
