import { GraftError } from '../errors.js';

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
}

/**
 * The end-of-epoch bookkeeping every trainer shares: fail on a diverged loss, keep the history, and stop once
 * validation loss has not improved for `patience` epochs. The caller keeps a copy of its weights on 'best'.
 */
export class EarlyStopping {
  readonly history: EpochRecord[] = [];
  bestEpoch = 0;
  #bestLoss = Number.POSITIVE_INFINITY;

  constructor(
    private readonly patience: number,
    private readonly onEpoch?: ((record: EpochRecord) => void) | undefined,
  ) {}

  /** Records one epoch: 'best' when validation loss improved, 'stop' when patience ran out, else 'continue'. */
  record(
    epoch: number,
    trainLoss: number,
    validationLoss: number,
    learningRate: number,
  ): 'best' | 'stop' | 'continue' {
    if (!Number.isFinite(trainLoss) || !Number.isFinite(validationLoss)) {
      throw new GraftError(
        'TRAINING_FAILED',
        `Training diverged at epoch ${epoch} (train loss ${trainLoss}, validation loss ${validationLoss}): lower the learning rate (now ${learningRate}).`,
      );
    }
    const record = { epoch, trainLoss, validationLoss };
    this.history.push(record);
    this.onEpoch?.(record);
    if (validationLoss < this.#bestLoss - 1e-9) {
      this.#bestLoss = validationLoss;
      this.bestEpoch = epoch;
      return 'best';
    }
    return epoch - this.bestEpoch >= this.patience ? 'stop' : 'continue';
  }
}
