import { GraftError } from '../errors.js';

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** Rows whose true label is this class. */
  support: number;
}

export interface Metrics {
  accuracy: number;
  /** Mean F1 over the labels that occur in the true labels or in the predictions (as scikit-learn). */
  macroF1: number;
  /** Mean -ln p(true label), with p clipped to [1e-15, 1]. */
  logLoss: number;
  /** Expected calibration error of the top-1 confidence, 15 equal-width bins over (0, 1]. */
  ece: number;
  perClass: Record<string, ClassMetrics>;
  /** Rows = true label, columns = predicted label, both in `labels` order. */
  confusionMatrix: number[][];
  labels: string[];
  n: number;
}

const ECE_BINS = 15;
const MIN_PROBABILITY = 1e-15;

/** The index of the largest value (the first one on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let c = 1; c < values.length; c++) if ((values[c] as number) > (values[best] as number)) best = c;
  return best;
}

/** Classification metrics of probability rows against true label indices (into `labels`). */
export function computeMetrics(
  yTrue: readonly number[],
  probabilities: readonly ArrayLike<number>[],
  labels: readonly string[],
): Metrics {
  const k = labels.length;
  const n = yTrue.length;
  if (probabilities.length !== n) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `computeMetrics: ${n} labels but ${probabilities.length} probability rows.`,
    );
  }
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  const binCount = new Float64Array(ECE_BINS);
  const binCorrect = new Float64Array(ECE_BINS);
  const binConfidence = new Float64Array(ECE_BINS);
  let correct = 0;
  let logLoss = 0;
  for (let i = 0; i < n; i++) {
    const y = yTrue[i] as number;
    const p = probabilities[i] as ArrayLike<number>;
    if (!Number.isInteger(y) || y < 0 || y >= k || p.length !== k) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `computeMetrics: row ${i} has label index ${y} and ${p.length} probabilities; expected an index below ${k} and ${k} probabilities.`,
      );
    }
    const predicted = argmax(p);
    const confidence = p[predicted] as number;
    (confusion[y] as number[])[predicted] = ((confusion[y] as number[])[predicted] as number) + 1;
    const hit = predicted === y ? 1 : 0;
    correct += hit;
    logLoss -= Math.log(Math.min(1, Math.max(MIN_PROBABILITY, p[y] as number)));
    const bin = Math.min(ECE_BINS - 1, Math.max(0, Math.ceil(confidence * ECE_BINS) - 1));
    binCount[bin] = (binCount[bin] as number) + 1;
    binCorrect[bin] = (binCorrect[bin] as number) + hit;
    binConfidence[bin] = (binConfidence[bin] as number) + confidence;
  }
  let ece = 0;
  for (let b = 0; b < ECE_BINS; b++) {
    const count = binCount[b] as number;
    if (count > 0) ece += Math.abs((binCorrect[b] as number) - (binConfidence[b] as number)) / n;
  }
  const perClass: [string, ClassMetrics][] = [];
  let f1Sum = 0;
  let f1Count = 0;
  for (let c = 0; c < k; c++) {
    const truePositives = (confusion[c] as number[])[c] as number;
    const support = (confusion[c] as number[]).reduce((a, b) => a + b, 0);
    let predictedCount = 0;
    for (let r = 0; r < k; r++) predictedCount += (confusion[r] as number[])[c] as number;
    const precision = predictedCount > 0 ? truePositives / predictedCount : 0;
    const recall = support > 0 ? truePositives / support : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    perClass.push([labels[c] as string, { precision, recall, f1, support }]);
    if (support > 0 || predictedCount > 0) {
      f1Sum += f1;
      f1Count++;
    }
  }
  return {
    accuracy: n > 0 ? correct / n : 0,
    macroF1: f1Count > 0 ? f1Sum / f1Count : 0,
    logLoss: n > 0 ? logLoss / n : 0,
    ece,
    // fromEntries defines own properties, so a label named "__proto__" is just a label.
    perClass: Object.fromEntries(perClass),
    confusionMatrix: confusion,
    labels: [...labels],
    n,
  };
}

/**
 * Accuracy and macro-F1 of predicted label indices (the same definitions as `computeMetrics`), optionally with a
 * weight per row: a bootstrap resample is the weights "how many times each row was drawn".
 */
export function predictionScores(
  yTrue: ArrayLike<number>,
  predicted: ArrayLike<number>,
  classes: number,
  weights?: ArrayLike<number>,
): { accuracy: number; macroF1: number } {
  const truePositives = new Float64Array(classes);
  const support = new Float64Array(classes);
  const predictedCount = new Float64Array(classes);
  let total = 0;
  let correct = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const w = weights ? (weights[i] as number) : 1;
    if (w === 0) continue;
    const y = yTrue[i] as number;
    const p = predicted[i] as number;
    total += w;
    support[y] = (support[y] as number) + w;
    predictedCount[p] = (predictedCount[p] as number) + w;
    if (p === y) {
      correct += w;
      truePositives[y] = (truePositives[y] as number) + w;
    }
  }
  let f1Sum = 0;
  let f1Count = 0;
  for (let c = 0; c < classes; c++) {
    const s = support[c] as number;
    const q = predictedCount[c] as number;
    if (s === 0 && q === 0) continue;
    const tp = truePositives[c] as number;
    // F1 = 2 tp / (support + predicted): the harmonic mean of precision and recall, 0 when either is.
    f1Sum += (2 * tp) / (s + q);
    f1Count++;
  }
  return { accuracy: total > 0 ? correct / total : 0, macroF1: f1Count > 0 ? f1Sum / f1Count : 0 };
}
