import { GraftError } from '../errors.js';
import { createRng, shuffleInPlace } from './rng.js';

/**
 * Splits rows into train and validation, label by label: round(fraction * count) validation rows per label,
 * at least 1 when the label has 2 or more rows and never all of them (a single-row label stays in train).
 * Deterministic for a seed; both halves keep the rows' original order.
 */
export function stratifiedSplit<T extends { label: string }>(
  rows: readonly T[],
  { validationFraction = 0.2, seed = 42 }: { validationFraction?: number; seed?: number } = {},
): { train: T[]; validation: T[] } {
  if (!(validationFraction > 0 && validationFraction < 1)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `validationFraction must be between 0 and 1 (exclusive); got ${validationFraction}.`,
    );
  }
  const byLabel = new Map<string, number[]>();
  rows.forEach((row, i) => {
    const group = byLabel.get(row.label);
    if (group) group.push(i);
    else byLabel.set(row.label, [i]);
  });
  const rng = createRng(seed);
  const isValidation = new Uint8Array(rows.length);
  // Labels in sorted order, so the split does not depend on the order labels first appear in.
  for (const label of [...byLabel.keys()].sort()) {
    const group = byLabel.get(label) as number[];
    if (group.length < 2) continue;
    const take = Math.min(group.length - 1, Math.max(1, Math.round(group.length * validationFraction)));
    shuffleInPlace(group, rng);
    for (let k = 0; k < take; k++) isValidation[group[k] as number] = 1;
  }
  const train: T[] = [];
  const validation: T[] = [];
  rows.forEach((row, i) => {
    (isValidation[i] ? validation : train).push(row);
  });
  return { train, validation };
}

/**
 * Stratified k-fold cross-validation: the fold (0..k-1) of each row. Label by label (in sorted order), the rows
 * are shuffled (seeded) and dealt round-robin, each label starting at the fold after the one where the previous
 * label stopped: every label's rows spread over the folds with counts differing by at most one, and the folds'
 * sizes differ by at most one. Deterministic for a seed.
 */
export function stratifiedKFold(
  labels: readonly (string | number)[] | ArrayLike<number>,
  { k = 5, seed = 42 }: { k?: number; seed?: number } = {},
): Int32Array {
  const n = labels.length;
  if (!Number.isInteger(k) || k < 2 || k > n) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `k-fold needs an integer k between 2 and the ${n} rows; got ${k}.`,
    );
  }
  const byLabel = new Map<string | number, number[]>();
  for (let i = 0; i < n; i++) {
    const label = labels[i] as string | number;
    const group = byLabel.get(label);
    if (group) group.push(i);
    else byLabel.set(label, [i]);
  }
  const rng = createRng(seed);
  const folds = new Int32Array(n);
  let next = 0;
  const keys = [...byLabel.keys()].sort((a, b) =>
    String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0,
  );
  for (const label of keys) {
    const group = shuffleInPlace(byLabel.get(label) as number[], rng);
    for (const row of group) {
      folds[row] = next;
      next = (next + 1) % k;
    }
  }
  return folds;
}
