import { GraftError } from '../errors.js';
import type { EpochRecord } from './early-stopping.js';
import type { SparseVector } from './hash-ngrams.js';
import { fitNetwork, type LabelledMatrix } from './network.js';
import type { SoftmaxHead } from './softmax-head.js';

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

/**
 * The linear softmax head on sparse rows: `fitNetwork` without a hidden layer (mini-batch AdamW on the
 * class-weighted cross-entropy, seeded shuffling, early stopping on the validation loss with patience), after
 * checking that every feature is finite; returns the best epoch's weights.
 */
export async function fitLogistic(
  train: SparseDataset,
  validation: SparseDataset,
  options: FitLogisticOptions,
): Promise<FitLogisticResult> {
  const { dims, classes, hyperparameters, classWeights, seed, signal, onEpoch } = options;
  for (const [name, data] of [
    ['training', train],
    ['validation', validation],
  ] as const) {
    data.rows.forEach((row, i) => {
      assertFinite(row.values, `the features of ${name} row ${i}`);
    });
  }
  const matrix = (data: SparseDataset): LabelledMatrix => ({
    X: { kind: 'sparse', dims, rows: data.rows },
    labels: data.labels,
  });
  const result = await fitNetwork(matrix(train), matrix(validation), {
    classes,
    hyperparameters: { ...hyperparameters, hiddenSize: 0, dropout: 0 },
    classWeights,
    seed,
    signal,
    onEpoch,
  });
  return { head: result.network.first, bestEpoch: result.bestEpoch, history: result.history };
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
