import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GraftError } from '../errors.js';
import { SparseAdamW } from './adamw.js';
import { EarlyStopping, type EpochRecord } from './early-stopping.js';
import type { SparseVector } from './hash-ngrams.js';
import { createRng, shuffleInPlace } from './rng.js';
import { batchLossAndGradient, SoftmaxHead, SparseGradient } from './softmax-head.js';

/** Rows as the trainer sees them: hashed vectors and label indices. */
export interface SparseDataset {
  readonly rows: readonly SparseVector[];
  readonly labels: Int32Array;
}

export interface Hyperparameters {
  learningRate: number;
  weightDecay: number;
  batchSize: number;
  maxEpochs: number;
  /** Epochs without a lower validation loss before training stops (the best epoch's weights are kept). */
  patience: number;
}

export type { EpochRecord } from './early-stopping.js';

export interface FitLogisticOptions {
  dims: number;
  classes: number;
  hyperparameters: Hyperparameters;
  classWeights: Float64Array;
  seed: number;
  signal?: AbortSignal | undefined;
  /** Called after every epoch, with the epoch just done. */
  onEpoch?: ((record: EpochRecord) => void) | undefined;
}

export interface FitLogisticResult {
  /** The weights of the epoch with the lowest validation loss. */
  head: SoftmaxHead;
  bestEpoch: number;
  history: EpochRecord[];
}

// Yield to the event loop at least this often, so that aborts, progress and other requests get through.
const YIELD_EVERY_MS = 50;

/**
 * Mini-batch AdamW on the class-weighted cross-entropy, seeded shuffling, early stopping on the validation
 * loss (class-weighted mean) with patience; returns the best epoch's weights.
 */
export async function fitLogistic(
  train: SparseDataset,
  validation: SparseDataset,
  options: FitLogisticOptions,
): Promise<FitLogisticResult> {
  const { dims, classes, hyperparameters, classWeights, seed, signal, onEpoch } = options;
  const { learningRate, weightDecay, batchSize, maxEpochs, patience } = hyperparameters;
  for (const [name, data] of [
    ['training', train],
    ['validation', validation],
  ] as const) {
    data.rows.forEach((row, i) => {
      assertFinite(row.values, `the features of ${name} row ${i}`);
    });
  }
  const head = new SoftmaxHead(dims, classes);
  const best = head.clone();
  const optimizer = new SparseAdamW(head, { learningRate, weightDecay });
  const grad = new SparseGradient(dims, classes);
  const rng = createRng(seed);
  const order = Int32Array.from(train.rows.keys());
  const batchRows: SparseVector[] = [];
  const batchLabels = new Int32Array(batchSize);
  const stopping = new EarlyStopping(patience, onEpoch);
  // A label with no training rows weighs 0 in training; its validation rows still count, with weight 1.
  const validationWeights = classWeights.map((w) => (w > 0 ? w : 1));
  let lastYield = performance.now();

  for (let epoch = 1; epoch <= maxEpochs; epoch++) {
    shuffleInPlace(order, rng);
    let lossSum = 0;
    for (let start = 0; start < order.length; start += batchSize) {
      const end = Math.min(start + batchSize, order.length);
      batchRows.length = 0;
      for (let i = start; i < end; i++) {
        const row = order[i] as number;
        batchRows.push(train.rows[row] as SparseVector);
        batchLabels[i - start] = train.labels[row] as number;
      }
      const loss = batchLossAndGradient(head, batchRows, batchLabels, classWeights, grad);
      lossSum += loss * (end - start);
      optimizer.update(grad);
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await yieldToEventLoop();
        signal?.throwIfAborted();
        lastYield = performance.now();
      }
    }
    optimizer.flush();
    const trainLoss = lossSum / order.length;
    const validationLoss = weightedLoss(head, validation, validationWeights);
    const verdict = stopping.record(epoch, trainLoss, validationLoss, learningRate);
    if (verdict === 'best') best.copyFrom(head);
    else if (verdict === 'stop') break;
    await yieldToEventLoop();
    signal?.throwIfAborted();
    lastYield = performance.now();
  }
  return { head: best, bestEpoch: stopping.bestEpoch, history: stopping.history };
}

/** Class-weighted mean cross-entropy, `sum_i w[y_i] * CE_i / sum_i w[y_i]`. */
export function weightedLoss(
  head: SoftmaxHead,
  data: SparseDataset,
  classWeights: ArrayLike<number>,
): number {
  const batch = data.rows.length;
  if (batch === 0) return 0;
  let weightSum = 0;
  for (let i = 0; i < batch; i++) weightSum += classWeights[data.labels[i] as number] as number;
  if (weightSum === 0) return 0;
  return (batchLossAndGradient(head, data.rows, data.labels, classWeights) * batch) / weightSum;
}

/** Throws TRAINING_FAILED at the first NaN or infinity. */
export function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new GraftError(
        'TRAINING_FAILED',
        `Found ${values[i]} in ${what} (at position ${i}); every value must be a finite number.`,
      );
    }
  }
}
