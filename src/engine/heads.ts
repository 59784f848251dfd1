// Trained heads in the form they are exported: float32 parameters over the backbone's raw features (any
// standardisation folded in), and `headLogits`, which computes in TypeScript what the exported graph computes.
import type { FeatureMatrix } from './features.js';
import type { SparseVector } from './hash-ngrams.js';
import type { Network } from './network.js';

/** logits = x W + b (W row-major [dims, classes]). */
export interface LinearHead {
  kind: 'linear';
  dims: number;
  classes: number;
  weights: Float32Array;
  bias: Float32Array;
}

/** logits = relu(x W1 + b1) W2 + b2. */
export interface MlpHead {
  kind: 'mlp';
  dims: number;
  hidden: number;
  classes: number;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

/**
 * Cosine similarity to one prototype per class: logits = normalize(x - center) P, where the columns of P
 * ([dims, classes]) are unit prototypes times `scale` (a zero column for a class without prototype).
 */
export interface CosineHead {
  kind: 'cosine';
  dims: number;
  classes: number;
  /** Subtracted before normalising (the training rows' mean, for dense centroid heads). */
  center: Float32Array | undefined;
  prototypes: Float32Array;
  scale: number;
}

export type TrainedHead = LinearHead | MlpHead | CosineHead;

/** Multiplies cosine similarities (in [-1, 1]) into logits; temperature scaling then fits the effective scale. */
export const COSINE_SCALE = 20;
/** The floor of a norm before dividing by it (a zero row stays a zero row). */
export const NORM_EPSILON = 1e-12;

/** Number of float parameters a head exports. */
export function headParameterCount(head: TrainedHead): number {
  switch (head.kind) {
    case 'linear':
      return head.weights.length + head.bias.length;
    case 'mlp':
      return head.w1.length + head.b1.length + head.w2.length + head.b2.length;
    case 'cosine':
      return head.prototypes.length + (head.center?.length ?? 0);
  }
}

/**
 * The exported form of a trained network: a dense network's standardisation x' = (x - mean) * scale is folded
 * into its first layer, W'[j] = scale[j] W[j] and b' = b - sum_j mean[j] scale[j] W[j], so that the head reads
 * the backbone's features as they are.
 */
export function headFromNetwork(network: Network): LinearHead | MlpHead {
  const { first, second, standardizer, inputs: dims } = network;
  const width = first.classes;
  let weights = first.weights;
  let bias = first.bias;
  if (standardizer) {
    const { mean, scale } = standardizer;
    weights = new Float32Array(first.weights.length);
    const shift = Float64Array.from(first.bias);
    for (let j = 0; j < dims; j++) {
      const s = scale[j] as number;
      const m = mean[j] as number;
      const base = j * width;
      for (let c = 0; c < width; c++) {
        const w = (first.weights[base + c] as number) * s;
        weights[base + c] = w;
        shift[c] = (shift[c] as number) - m * w;
      }
    }
    bias = Float32Array.from(shift);
  } else {
    weights = weights.slice();
    bias = bias.slice();
  }
  if (!second) return { kind: 'linear', dims, classes: width, weights, bias };
  return {
    kind: 'mlp',
    dims,
    hidden: width,
    classes: second.classes,
    w1: weights,
    b1: bias,
    w2: second.weights.slice(),
    b2: second.bias.slice(),
  };
}

/**
 * A cosine head from one vector per class (in feature space; `undefined` or a zero vector: no prototype, the
 * class scores 0). Each prototype is normalised and multiplied by `scale`.
 */
export function cosineHead(
  prototypes: readonly (ArrayLike<number> | undefined)[],
  dims: number,
  { center, scale = COSINE_SCALE }: { center?: Float32Array | undefined; scale?: number } = {},
): CosineHead {
  const classes = prototypes.length;
  const P = new Float32Array(dims * classes);
  prototypes.forEach((p, c) => {
    if (!p) return;
    let norm = 0;
    for (let j = 0; j < dims; j++) norm += (p[j] as number) ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) return;
    for (let j = 0; j < dims; j++) P[j * classes + c] = ((p[j] as number) / norm) * scale;
  });
  return { kind: 'cosine', dims, classes, center, prototypes: P, scale };
}

/**
 * Few-shot prototypes: per class, the mean of the L2-normalised rows (centred first when `center` is given), as
 * float64 vectors; `undefined` for a class without rows.
 */
export function classMeans(
  X: FeatureMatrix,
  labels: ArrayLike<number>,
  classes: number,
  center?: Float32Array,
): (Float64Array | undefined)[] {
  const sums: (Float64Array | undefined)[] = new Array(classes).fill(undefined);
  const d = X.dims;
  const x = new Float64Array(d);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] as number;
    let sum = sums[y];
    if (!sum) {
      sum = new Float64Array(d);
      sums[y] = sum;
    }
    if (X.kind === 'sparse') {
      const { indices, values } = X.rows[i] as SparseVector;
      let norm = 0;
      for (let k = 0; k < values.length; k++) norm += (values[k] as number) ** 2;
      const inverse = 1 / Math.max(Math.sqrt(norm), NORM_EPSILON);
      for (let k = 0; k < indices.length; k++) {
        const j = indices[k] as number;
        sum[j] = (sum[j] as number) + (values[k] as number) * inverse;
      }
    } else {
      normalizedRow(X, i, center, x);
      for (let j = 0; j < d; j++) sum[j] = (sum[j] as number) + (x[j] as number);
    }
  }
  return sums;
}

/** The mean row of a dense matrix, as float32 (the `center` of a dense centroid head). */
export function meanRow(X: Extract<FeatureMatrix, { kind: 'dense' }>): Float32Array {
  const mean = new Float64Array(X.dims);
  for (let i = 0; i < X.rows; i++) {
    for (let j = 0; j < X.dims; j++) mean[j] = (mean[j] as number) + (X.data[i * X.dims + j] as number);
  }
  return Float32Array.from(mean, (v) => v / Math.max(X.rows, 1));
}

/** Row i of a dense matrix, centred and L2-normalised (norm floored at NORM_EPSILON), into `out`. */
function normalizedRow(
  X: Extract<FeatureMatrix, { kind: 'dense' }>,
  i: number,
  center: Float32Array | undefined,
  out: Float64Array,
): void {
  const d = X.dims;
  const base = i * d;
  let norm = 0;
  for (let j = 0; j < d; j++) {
    // Centred in float32, as the exported Sub computes it.
    const v = center
      ? Math.fround((X.data[base + j] as number) - (center[j] as number))
      : (X.data[base + j] as number);
    out[j] = v;
    norm += v * v;
  }
  const inverse = 1 / Math.max(Math.sqrt(norm), NORM_EPSILON);
  for (let j = 0; j < d; j++) out[j] = (out[j] as number) * inverse;
}

/** z = b + x W for sparse x. */
function sparseAffine(
  x: SparseVector,
  W: Float32Array,
  b: Float32Array | undefined,
  z: Float64Array,
  scale = 1,
): void {
  const C = z.length;
  for (let c = 0; c < C; c++) z[c] = b ? (b[c] as number) : 0;
  const { indices, values } = x;
  for (let k = 0; k < indices.length; k++) {
    const v = (values[k] as number) * scale;
    let p = (indices[k] as number) * C;
    for (let c = 0; c < C; c++, p++) z[c] = (z[c] as number) + v * (W[p] as number);
  }
}

/** z = b + x W for dense x. */
function denseAffine(
  x: ArrayLike<number>,
  d: number,
  W: Float32Array,
  b: Float32Array | undefined,
  z: Float64Array,
): void {
  const C = z.length;
  for (let c = 0; c < C; c++) z[c] = b ? (b[c] as number) : 0;
  for (let j = 0; j < d; j++) {
    const v = x[j] as number;
    if (v === 0) continue;
    let p = j * C;
    for (let c = 0; c < C; c++, p++) z[c] = (z[c] as number) + v * (W[p] as number);
  }
}

/** The logits of every row, as the exported graph computes them (in float64, from the float32 parameters). */
export function headLogits(head: TrainedHead, X: FeatureMatrix): Float64Array[] {
  const n = X.kind === 'sparse' ? X.rows.length : X.rows;
  const d = X.dims;
  const out: Float64Array[] = [];
  const x = new Float64Array(d);
  const hidden = head.kind === 'mlp' ? new Float64Array(head.hidden) : undefined;
  for (let i = 0; i < n; i++) {
    const z = new Float64Array(head.classes);
    switch (head.kind) {
      case 'linear':
        if (X.kind === 'sparse') sparseAffine(X.rows[i] as SparseVector, head.weights, head.bias, z);
        else denseAffine(X.data.subarray(i * d, (i + 1) * d), d, head.weights, head.bias, z);
        break;
      case 'mlp': {
        const h = hidden as Float64Array;
        if (X.kind === 'sparse') sparseAffine(X.rows[i] as SparseVector, head.w1, head.b1, h);
        else denseAffine(X.data.subarray(i * d, (i + 1) * d), d, head.w1, head.b1, h);
        for (let k = 0; k < h.length; k++) if ((h[k] as number) < 0) h[k] = 0;
        denseAffine(h, head.hidden, head.w2, head.b2, z);
        break;
      }
      case 'cosine':
        if (X.kind === 'sparse') {
          const row = X.rows[i] as SparseVector;
          let norm = 0;
          for (let k = 0; k < row.values.length; k++) norm += (row.values[k] as number) ** 2;
          sparseAffine(row, head.prototypes, undefined, z, 1 / Math.max(Math.sqrt(norm), NORM_EPSILON));
        } else {
          normalizedRow(X, i, head.center, x);
          denseAffine(x, d, head.prototypes, undefined, z);
        }
        break;
    }
    out.push(z);
  }
  return out;
}
