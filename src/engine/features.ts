import { GraftError } from '../errors.js';
import type { SparseVector } from './hash-ngrams.js';

/**
 * Rows of features as a backbone gives them: sparse (hashed n-grams, one vector per row) or dense (row-major
 * float32, `rows x dims`, as text and image backbones give them and as the embeddings cache stores them).
 */
export type FeatureMatrix =
  | { kind: 'sparse'; dims: number; rows: readonly SparseVector[] }
  | { kind: 'dense'; dims: number; rows: number; data: Float32Array };

/** The number of rows. */
export function featureRows(m: FeatureMatrix): number {
  return m.kind === 'sparse' ? m.rows.length : m.rows;
}

/** A dense matrix from row vectors of equal length `dims` (copied into one buffer). */
export function denseFeatures(rows: readonly ArrayLike<number>[], dims: number): FeatureMatrix {
  const data = new Float32Array(rows.length * dims);
  rows.forEach((row, i) => {
    if (row.length !== dims) {
      throw new GraftError('INVALID_OPTIONS', `Feature row ${i} has ${row.length} values; expected ${dims}.`);
    }
    data.set(row, i * dims);
  });
  return { kind: 'dense', dims, rows: rows.length, data };
}

/** Row `i` of a dense matrix, as a view (no copy). */
export function denseRow(m: Extract<FeatureMatrix, { kind: 'dense' }>, i: number): Float32Array {
  return m.data.subarray(i * m.dims, (i + 1) * m.dims);
}

/** The rows at `indices`, in that order (dense rows are copied; sparse rows are shared, they are never changed). */
export function selectRows(m: FeatureMatrix, indices: readonly number[]): FeatureMatrix {
  const n = featureRows(m);
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= n) {
      throw new GraftError('INVALID_OPTIONS', `selectRows: row ${i} is out of range (the matrix has ${n}).`);
    }
  }
  if (m.kind === 'sparse')
    return { kind: 'sparse', dims: m.dims, rows: indices.map((i) => m.rows[i] as SparseVector) };
  const data = new Float32Array(indices.length * m.dims);
  indices.forEach((i, k) => {
    data.set(denseRow(m, i), k * m.dims);
  });
  return { kind: 'dense', dims: m.dims, rows: indices.length, data };
}

/** The rows of `a` followed by the rows of `b`; both must be of the same kind and width (else INVALID_OPTIONS). */
export function concatFeatures(a: FeatureMatrix, b: FeatureMatrix): FeatureMatrix {
  if (a.kind !== b.kind || a.dims !== b.dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Cannot join ${a.kind} features of width ${a.dims} with ${b.kind} features of width ${b.dims}: they come from different backbones.`,
    );
  }
  if (a.kind === 'sparse' && b.kind === 'sparse')
    return { kind: 'sparse', dims: a.dims, rows: [...a.rows, ...b.rows] };
  const left = a as Extract<FeatureMatrix, { kind: 'dense' }>;
  const right = b as Extract<FeatureMatrix, { kind: 'dense' }>;
  const data = new Float32Array(left.data.length + right.data.length);
  data.set(left.data);
  data.set(right.data, left.data.length);
  return { kind: 'dense', dims: a.dims, rows: left.rows + right.rows, data };
}

/** Densifies a matrix (sparse rows scattered into zeros). */
export function toDense(m: FeatureMatrix): Extract<FeatureMatrix, { kind: 'dense' }> {
  if (m.kind === 'dense') return m;
  const data = new Float32Array(m.rows.length * m.dims);
  m.rows.forEach((row, i) => {
    const base = i * m.dims;
    for (let k = 0; k < row.indices.length; k++)
      data[base + (row.indices[k] as number)] = row.values[k] as number;
  });
  return { kind: 'dense', dims: m.dims, rows: m.rows.length, data };
}

/**
 * Checks a matrix before training: the width the backbone gives, well-formed rows, and finite values. A NaN or an
 * infinity throws TRAINING_FAILED naming the set and the row (the backbone or the cache produced it).
 */
export function checkFeatures(m: FeatureMatrix, dims: number, what: string): void {
  if (m === null || typeof m !== 'object' || (m.kind !== 'sparse' && m.kind !== 'dense')) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `The ${what} features must be a FeatureMatrix (sparse or dense).`,
    );
  }
  if (m.dims !== dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `The ${what} features are ${m.dims} wide; the backbone gives ${dims}: extract them with the task's backbone.`,
    );
  }
  const fail = (row: number, value: number) =>
    new GraftError(
      'TRAINING_FAILED',
      `The ${what} features hold ${value} in row ${row}; every feature must be a finite number. Check the backbone and the embeddings cache (delete the cached features to recompute them).`,
      { details: { set: what, row } },
    );
  if (m.kind === 'dense') {
    if (!(m.data instanceof Float32Array) || m.data.length !== m.rows * dims) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `The ${what} features hold ${m.data?.length} values; ${m.rows} rows of ${dims} need ${m.rows * dims}.`,
      );
    }
    const { data } = m;
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number;
      // v - v is NaN for NaN and for both infinities.
      if (v - v !== 0) throw fail(Math.floor(i / dims), v);
    }
    return;
  }
  m.rows.forEach((row, r) => {
    if (!(row?.indices instanceof Int32Array) || !(row.values instanceof Float32Array)) {
      throw new GraftError('INVALID_OPTIONS', `The ${what} features: row ${r} is not a sparse vector.`);
    }
    if (row.indices.length !== row.values.length) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `The ${what} features: row ${r} has indices and values of different lengths.`,
      );
    }
    for (let k = 0; k < row.values.length; k++) {
      const v = row.values[k] as number;
      if (v - v !== 0) throw fail(r, v);
      const j = row.indices[k] as number;
      if (j < 0 || j >= dims) {
        throw new GraftError(
          'INVALID_OPTIONS',
          `The ${what} features: row ${r} has index ${j}, outside 0..${dims - 1}.`,
        );
      }
    }
  });
}

/** Euclidean norm of row `i`. */
export function rowNorm(m: FeatureMatrix, i: number): number {
  let sum = 0;
  if (m.kind === 'sparse') {
    const values = (m.rows[i] as SparseVector).values;
    for (let k = 0; k < values.length; k++) sum += (values[k] as number) ** 2;
  } else {
    const base = i * m.dims;
    for (let j = 0; j < m.dims; j++) sum += (m.data[base + j] as number) ** 2;
  }
  return Math.sqrt(sum);
}
