import type { SparseVector } from './hash-ngrams.js';

/** A linear softmax head: logits = x W + b, with W row-major `[dims, classes]` (the ONNX MatMul layout). */
export class SoftmaxHead {
  readonly dims: number;
  readonly classes: number;
  readonly weights: Float32Array;
  readonly bias: Float32Array;

  constructor(dims: number, classes: number, weights?: Float32Array, bias?: Float32Array) {
    this.dims = dims;
    this.classes = classes;
    this.weights = weights ?? new Float32Array(dims * classes);
    this.bias = bias ?? new Float32Array(classes);
    if (this.weights.length !== dims * classes || this.bias.length !== classes) {
      throw new RangeError(`SoftmaxHead: expected ${dims}x${classes} weights and ${classes} biases.`);
    }
  }

  clone(): SoftmaxHead {
    return new SoftmaxHead(this.dims, this.classes, this.weights.slice(), this.bias.slice());
  }

  copyFrom(other: SoftmaxHead): void {
    this.weights.set(other.weights);
    this.bias.set(other.bias);
  }

  /** Writes the logits of one sparse row into `out` (length `classes`). */
  logitsInto(x: SparseVector, out: Float64Array): void {
    const C = this.classes;
    const W = this.weights;
    for (let c = 0; c < C; c++) out[c] = this.bias[c] as number;
    const { indices, values } = x;
    // Unrolled by 4: V8 does not vectorise, and this loop is most of the training time.
    const C4 = C - (C & 3);
    for (let k = 0; k < indices.length; k++) {
      const v = values[k] as number;
      let p = (indices[k] as number) * C;
      let c = 0;
      for (; c < C4; c += 4, p += 4) {
        out[c] = (out[c] as number) + v * (W[p] as number);
        out[c + 1] = (out[c + 1] as number) + v * (W[p + 1] as number);
        out[c + 2] = (out[c + 2] as number) + v * (W[p + 2] as number);
        out[c + 3] = (out[c + 3] as number) + v * (W[p + 3] as number);
      }
      for (; c < C; c++, p++) out[c] = (out[c] as number) + v * (W[p] as number);
    }
  }

  /** Logits of many rows, one Float64Array per row. */
  logits(rows: readonly SparseVector[]): Float64Array[] {
    return rows.map((x) => {
      const out = new Float64Array(this.classes);
      this.logitsInto(x, out);
      return out;
    });
  }
}

/**
 * Gradient of a batch: rows of dW only where some input feature was non-zero, plus the full db.
 * `slotOf[j]` is the slot of weight row j in `values`, or -1.
 */
export class SparseGradient {
  readonly classes: number;
  readonly slotOf: Int32Array;
  readonly bias: Float64Array;
  rows: Int32Array;
  values: Float64Array;
  count = 0;

  constructor(dims: number, classes: number) {
    this.classes = classes;
    this.slotOf = new Int32Array(dims).fill(-1);
    this.bias = new Float64Array(classes);
    this.rows = new Int32Array(1024);
    this.values = new Float64Array(1024 * classes);
  }

  reset(): void {
    for (let k = 0; k < this.count; k++) this.slotOf[this.rows[k] as number] = -1;
    this.count = 0;
    this.bias.fill(0);
  }

  /** Offset of weight row `j` in `values`, zeroed on first use. */
  offsetOf(j: number): number {
    const slot = this.slotOf[j] as number;
    if (slot >= 0) return slot * this.classes;
    if (this.count === this.rows.length) {
      const rows = new Int32Array(this.rows.length * 2);
      rows.set(this.rows);
      this.rows = rows;
      const values = new Float64Array(this.values.length * 2);
      values.set(this.values);
      this.values = values;
    }
    const next = this.count++;
    this.rows[next] = j;
    this.slotOf[j] = next;
    const offset = next * this.classes;
    this.values.fill(0, offset, offset + this.classes);
    return offset;
  }
}

/** Class weights 'balanced' (n / (k * count)), as scikit-learn; a class with no rows weighs 0. */
export function balancedClassWeights(labels: ArrayLike<number>, classes: number): Float64Array {
  const counts = new Float64Array(classes);
  for (let i = 0; i < labels.length; i++)
    counts[labels[i] as number] = (counts[labels[i] as number] as number) + 1;
  const present = counts.reduce((n, c) => n + (c > 0 ? 1 : 0), 0);
  return counts.map((c) => (c > 0 ? labels.length / (present * c) : 0));
}
