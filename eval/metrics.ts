// The evaluation's own scoring of predictions returned over HTTP: independent of the engine's metrics module, so
// the figures do not rest on the code they measure.

export interface Scores {
  accuracy: number;
  /** Mean F1 over the labels that occur in the truth or the predictions (scikit-learn's convention). */
  macroF1: number;
  n: number;
  /** Rows = true label, columns = predicted label, both in `labels` order. */
  confusion: number[][];
  labels: string[];
  perClass: Record<string, { precision: number; recall: number; f1: number; support: number }>;
}

/**
 * Scores predicted labels against true ones. `labels` fixes the order of the confusion matrix; a label that
 * appears only in the predictions is appended.
 */
export function scorePredictions(
  truth: readonly string[],
  predicted: readonly string[],
  labels: readonly string[],
): Scores {
  if (truth.length !== predicted.length) {
    throw new Error(`scorePredictions: ${truth.length} true labels but ${predicted.length} predictions`);
  }
  const order = [...labels];
  for (const label of [...truth, ...predicted]) if (!order.includes(label)) order.push(label);
  const index = new Map(order.map((label, i) => [label, i]));
  const k = order.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  truth.forEach((label, i) => {
    const guess = predicted[i] as string;
    const row = confusion[index.get(label) as number] as number[];
    const column = index.get(guess) as number;
    row[column] = (row[column] as number) + 1;
    if (guess === label) correct++;
  });
  const perClass: Scores['perClass'] = {};
  let f1Sum = 0;
  let f1Count = 0;
  order.forEach((label, c) => {
    const row = confusion[c] as number[];
    const truePositives = row[c] as number;
    const support = row.reduce((a, b) => a + b, 0);
    const predictedCount = confusion.reduce((sum, r) => sum + (r[c] as number), 0);
    const precision = predictedCount > 0 ? truePositives / predictedCount : 0;
    const recall = support > 0 ? truePositives / support : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    Object.defineProperty(perClass, label, {
      value: { precision, recall, f1, support },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    if (support > 0 || predictedCount > 0) {
      f1Sum += f1;
      f1Count++;
    }
  });
  const n = truth.length;
  return {
    accuracy: n > 0 ? correct / n : 0,
    macroF1: f1Count > 0 ? f1Sum / f1Count : 0,
    n,
    confusion,
    labels: order,
    perClass,
  };
}

/** Mean and sample standard deviation (0 for one value). */
export function meanAndSd(values: readonly number[]): { mean: number; sd: number } {
  if (values.length === 0) return { mean: Number.NaN, sd: Number.NaN };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (values.length === 1) return { mean, sd: 0 };
  const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (values.length - 1);
  return { mean, sd: Math.sqrt(variance) };
}

/** Sums confusion matrices of the same shape (the draws of one configuration). */
export function sumConfusion(matrices: readonly number[][][]): number[][] {
  const first = matrices[0];
  if (!first) return [];
  return first.map((row, r) =>
    row.map((_, c) => matrices.reduce((sum, m) => sum + ((m[r] ?? [])[c] ?? 0), 0)),
  );
}
