// A small softmax network on a FeatureMatrix: an input layer read from sparse or dense rows, then either the
// softmax directly (a linear head: the `logistic` strategy on dense features) or one hidden ReLU layer with
// dropout (the `mlp` strategy). AdamW (lazy and exact on sparse inputs), class weights, early stopping.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { DenseAdamW, SparseAdamW } from './adamw.js';
import { crossEntropyRow } from './cross-entropy.js';
import { EarlyStopping, type EpochRecord } from './early-stopping.js';
import type { FeatureMatrix } from './features.js';
import type { SparseVector } from './hash-ngrams.js';
import { createRng, type Rng, shuffleInPlace } from './rng.js';
import { SoftmaxHead, SparseGradient } from './softmax-head.js';
import type { Hyperparameters } from './train-logistic.js';

export interface NetworkHyperparameters extends Hyperparameters {
  /** Units of the hidden ReLU layer; 0 means none (a linear softmax head). */
  hiddenSize: number;
  /** Probability of dropping a hidden unit at train time (inverted dropout); 0 turns it off. */
  dropout: number;
}

/** Per-feature standardisation of dense inputs: x' = (x - mean) * scale. Folded into the first layer on export. */
export interface Standardizer {
  mean: Float64Array;
  scale: Float64Array;
}

/**
 * Mean and 1 / standard deviation of each feature over the rows. A feature whose deviation is below 1% of the
 * root-mean-square deviation gets that floor instead, so that a rare value of a nearly constant feature (a pixel
 * that is almost always 0) does not become a huge input; a constant feature gets scale 1 (it carries nothing).
 */
export function fitStandardizer(m: Extract<FeatureMatrix, { kind: 'dense' }>): Standardizer {
  const { dims, rows, data } = m;
  const mean = new Float64Array(dims);
  const variance = new Float64Array(dims);
  for (let i = 0; i < rows; i++) {
    const base = i * dims;
    for (let j = 0; j < dims; j++) mean[j] = (mean[j] as number) + (data[base + j] as number);
  }
  for (let j = 0; j < dims; j++) mean[j] = (mean[j] as number) / Math.max(rows, 1);
  for (let i = 0; i < rows; i++) {
    const base = i * dims;
    for (let j = 0; j < dims; j++) {
      const d = (data[base + j] as number) - (mean[j] as number);
      variance[j] = (variance[j] as number) + d * d;
    }
  }
  let meanVariance = 0;
  for (let j = 0; j < dims; j++) {
    variance[j] = (variance[j] as number) / Math.max(rows, 1);
    meanVariance += (variance[j] as number) / dims;
  }
  const floor = 0.01 * Math.sqrt(meanVariance);
  const scale = new Float64Array(dims);
  for (let j = 0; j < dims; j++) {
    const sd = Math.sqrt(variance[j] as number);
    scale[j] = sd === 0 || floor === 0 ? 1 : 1 / Math.max(sd, floor);
  }
  return { mean, scale };
}

/** Weights of a network: `first` maps the inputs to the hidden units (or to the classes when there are none). */
export class Network {
  readonly inputs: number;
  readonly hidden: number;
  readonly classes: number;
  readonly first: SoftmaxHead;
  readonly second: SoftmaxHead | undefined;
  /** Present for dense inputs: the network reads standardised features. */
  readonly standardizer: Standardizer | undefined;

  constructor(first: SoftmaxHead, second: SoftmaxHead | undefined, standardizer: Standardizer | undefined) {
    this.first = first;
    this.second = second;
    this.standardizer = standardizer;
    this.inputs = first.dims;
    this.hidden = second ? first.classes : 0;
    this.classes = second ? second.classes : first.classes;
    if (second && second.dims !== first.classes) {
      throw new RangeError(`Network: a first layer of ${first.classes} units feeds ${second.dims} inputs.`);
    }
  }

  clone(): Network {
    return new Network(this.first.clone(), this.second?.clone(), this.standardizer);
  }

  copyFrom(other: Network): void {
    this.first.copyFrom(other.first);
    if (this.second && other.second) this.second.copyFrom(other.second);
  }
}

function gaussian(rng: Rng): number {
  const u = 1 - rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/**
 * A network ready to train. Without a hidden layer every weight starts at 0 (the loss is convex). With one:
 * on dense inputs, He initialisation scaled to the mean squared norm of the (standardised) rows; on sparse inputs
 * the first weights start at 0 and the hidden biases at 0.1 (the random second layer breaks the symmetry), so a
 * feature never seen in training keeps a zero row and adds nothing at prediction time.
 */
export function createNetwork(
  inputs: number,
  classes: number,
  {
    hidden,
    standardizer,
    meanSquaredNorm,
    sparse,
    rng,
  }: {
    hidden: number;
    standardizer: Standardizer | undefined;
    meanSquaredNorm: number;
    sparse: boolean;
    rng: Rng;
  },
): Network {
  if (hidden === 0) return new Network(new SoftmaxHead(inputs, classes), undefined, standardizer);
  const first = new SoftmaxHead(inputs, hidden);
  if (sparse) {
    first.bias.fill(0.1);
  } else {
    const sd = Math.sqrt(2 / Math.max(meanSquaredNorm, 1e-12));
    for (let i = 0; i < first.weights.length; i++) first.weights[i] = sd * gaussian(rng);
  }
  const second = new SoftmaxHead(hidden, classes);
  const sd = Math.sqrt(1 / hidden);
  for (let i = 0; i < second.weights.length; i++) second.weights[i] = sd * gaussian(rng);
  return new Network(first, second, standardizer);
}

/** Gradients of a batch, in the layouts of the network's layers. */
export class NetworkGradient {
  /** Sparse inputs: rows of the first layer's gradient, only where a feature occurred (with its bias). */
  readonly firstSparse: SparseGradient | undefined;
  /** Dense inputs: the first layer's weight gradient. */
  readonly firstWeights: Float64Array | undefined;
  readonly firstBias: Float64Array;
  readonly secondWeights: Float64Array | undefined;
  readonly secondBias: Float64Array | undefined;

  constructor(network: Network, sparse: boolean) {
    const width = network.first.classes;
    this.firstSparse = sparse ? new SparseGradient(network.inputs, width) : undefined;
    this.firstWeights = sparse ? undefined : new Float64Array(network.inputs * width);
    this.firstBias = this.firstSparse ? this.firstSparse.bias : new Float64Array(width);
    this.secondWeights = network.second ? new Float64Array(network.second.weights.length) : undefined;
    this.secondBias = network.second ? new Float64Array(network.classes) : undefined;
  }

  reset(): void {
    if (this.firstSparse) this.firstSparse.reset();
    else {
      this.firstWeights?.fill(0);
      this.firstBias.fill(0);
    }
    this.secondWeights?.fill(0);
    this.secondBias?.fill(0);
  }
}

/** Rows a dense batch is processed in at a time (its buffers stay in cache; each weight row serves them all). */
const CHUNK = 32;

/** Scratch buffers of one forward / backward pass. */
export class NetworkPass {
  readonly x: Float64Array;
  readonly z1: Float64Array;
  readonly h: Float64Array;
  readonly z2: Float64Array;
  readonly deltaHidden: Float64Array;
  readonly delta: Float64Array;
  readonly #network: Network;
  #chunk: ChunkBuffers | undefined;

  constructor(network: Network) {
    this.#network = network;
    this.x = new Float64Array(network.inputs);
    this.z1 = new Float64Array(network.first.classes);
    this.h = new Float64Array(network.hidden);
    this.z2 = new Float64Array(network.classes);
    this.deltaHidden = new Float64Array(network.hidden);
    this.delta = new Float64Array(network.classes);
  }

  /** Dense inputs, CHUNK rows at a time: standardised inputs, first-layer outputs, hidden units, deltas. */
  get chunk(): ChunkBuffers {
    const network = this.#network;
    const width = network.first.classes;
    this.#chunk ??= {
      x: new Float64Array(CHUNK * network.inputs),
      z1: new Float64Array(CHUNK * width),
      h: new Float64Array(CHUNK * network.hidden),
      delta: new Float64Array(CHUNK * network.classes),
      delta1: new Float64Array(CHUNK * width),
    };
    return this.#chunk;
  }
}

interface ChunkBuffers {
  x: Float64Array;
  z1: Float64Array;
  h: Float64Array;
  delta: Float64Array;
  delta1: Float64Array;
}

/** Dropout at train time: each hidden unit is zeroed with probability `rate`, the others scaled by 1/(1 - rate). */
export interface DropoutDraw {
  rate: number;
  rng: Rng;
}

/** z = b + x W for a dense vector x (W row-major [x.length, z.length]); zeros of x are skipped. */
function denseAffine(x: Float64Array, W: Float32Array, b: Float32Array, z: Float64Array): void {
  const C = z.length;
  for (let c = 0; c < C; c++) z[c] = b[c] as number;
  const C4 = C - (C & 3);
  for (let j = 0; j < x.length; j++) {
    const v = x[j] as number;
    if (v === 0) continue;
    let p = j * C;
    let c = 0;
    for (; c < C4; c += 4, p += 4) {
      z[c] = (z[c] as number) + v * (W[p] as number);
      z[c + 1] = (z[c + 1] as number) + v * (W[p + 1] as number);
      z[c + 2] = (z[c + 2] as number) + v * (W[p + 2] as number);
      z[c + 3] = (z[c + 3] as number) + v * (W[p + 3] as number);
    }
    for (; c < C; c++, p++) z[c] = (z[c] as number) + v * (W[p] as number);
  }
}

/** g += x (outer) delta, for a dense x; zeros of x are skipped. */
function denseOuterAdd(x: Float64Array, delta: Float64Array, g: Float64Array): void {
  const C = delta.length;
  const C4 = C - (C & 3);
  for (let j = 0; j < x.length; j++) {
    const v = x[j] as number;
    if (v === 0) continue;
    let p = j * C;
    let c = 0;
    for (; c < C4; c += 4, p += 4) {
      g[p] = (g[p] as number) + v * (delta[c] as number);
      g[p + 1] = (g[p + 1] as number) + v * (delta[c + 1] as number);
      g[p + 2] = (g[p + 2] as number) + v * (delta[c + 2] as number);
      g[p + 3] = (g[p + 3] as number) + v * (delta[c + 3] as number);
    }
    for (; c < C; c++, p++) g[p] = (g[p] as number) + v * (delta[c] as number);
  }
}

/**
 * The logits of row `i` of `X` (into `pass.z2` with a hidden layer, else `pass.z1`; the returned array). With
 * `dropout`, draws a mask and applies it to the hidden units (the mask stays in `pass.h`).
 */
export function forwardRow(
  network: Network,
  X: FeatureMatrix,
  i: number,
  pass: NetworkPass,
  dropout?: DropoutDraw,
): Float64Array {
  const { first, second, standardizer } = network;
  if (X.kind === 'sparse') {
    first.logitsInto(X.rows[i] as SparseVector, pass.z1);
  } else {
    const d = X.dims;
    const base = i * d;
    const x = pass.x;
    const data = X.data;
    if (standardizer) {
      const { mean, scale } = standardizer;
      for (let j = 0; j < d; j++)
        x[j] = ((data[base + j] as number) - (mean[j] as number)) * (scale[j] as number);
    } else {
      for (let j = 0; j < d; j++) x[j] = data[base + j] as number;
    }
    denseAffine(x, first.weights, first.bias, pass.z1);
  }
  if (!second) return pass.z1;
  const { z1, h } = pass;
  const keep = dropout && dropout.rate > 0 ? 1 / (1 - dropout.rate) : 1;
  for (let k = 0; k < h.length; k++) {
    const a = z1[k] as number;
    let v = Math.max(a, 0);
    if (dropout && dropout.rate > 0) v = dropout.rng.next() < dropout.rate ? 0 : v * keep;
    h[k] = v;
  }
  denseAffine(h, second.weights, second.bias, pass.z2);
  return pass.z2;
}

/**
 * Class-weighted softmax cross-entropy of a batch, `(1/B) sum_i w[y_i] * -log softmax(f(x_i))[y_i]`, and its
 * gradient into `grad` (reset first) when given. `rows` are row indices into `X` and `labels`.
 */
export function networkBatchLoss(
  network: Network,
  X: FeatureMatrix,
  labels: ArrayLike<number>,
  rows: ArrayLike<number>,
  classWeights: ArrayLike<number>,
  pass: NetworkPass,
  grad?: NetworkGradient,
  dropout?: DropoutDraw,
): number {
  if (X.kind === 'dense') return denseBatchLoss(network, X, labels, rows, classWeights, pass, grad, dropout);
  const C = network.classes;
  const batch = rows.length;
  grad?.reset();
  let loss = 0;
  const { delta, deltaHidden, h, z1, x } = pass;
  for (let r = 0; r < batch; r++) {
    const i = rows[r] as number;
    const y = labels[i] as number;
    const w = classWeights[y] as number;
    const z = forwardRow(network, X, i, pass, dropout);
    loss += crossEntropyRow(z, delta, 0, C, y, w, batch, grad !== undefined);
    if (!grad || w === 0) continue;
    // delta = dL/dlogits of this row.
    let firstDelta = delta;
    const second = network.second;
    if (second && grad.secondWeights && grad.secondBias) {
      const gb = grad.secondBias;
      for (let c = 0; c < C; c++) gb[c] = (gb[c] as number) + (delta[c] as number);
      denseOuterAdd(h, delta, grad.secondWeights);
      const W2 = second.weights;
      for (let k = 0; k < h.length; k++) {
        // h > 0 exactly where the unit was active and kept: there dh/dz1 = the dropout scale, h / relu(z1).
        const hk = h[k] as number;
        if (hk === 0) {
          deltaHidden[k] = 0;
          continue;
        }
        let s = 0;
        const p = k * C;
        for (let c = 0; c < C; c++) s += (W2[p + c] as number) * (delta[c] as number);
        deltaHidden[k] = (s * hk) / (z1[k] as number);
      }
      firstDelta = deltaHidden;
    }
    const width = firstDelta.length;
    const gb = grad.firstBias;
    for (let c = 0; c < width; c++) gb[c] = (gb[c] as number) + (firstDelta[c] as number);
    if (X.kind === 'sparse' && grad.firstSparse) {
      const { indices, values } = X.rows[i] as SparseVector;
      const sparse = grad.firstSparse;
      for (let k = 0; k < indices.length; k++) {
        const v = values[k] as number;
        let p = sparse.offsetOf(indices[k] as number);
        const g = sparse.values;
        for (let c = 0; c < width; c++, p++) g[p] = (g[p] as number) + v * (firstDelta[c] as number);
      }
    } else if (grad.firstWeights) {
      denseOuterAdd(x, firstDelta, grad.firstWeights);
    }
  }
  return loss / batch;
}

/**
 * `networkBatchLoss` for dense inputs, CHUNK rows at a time: the first layer's forward product and weight gradient
 * run over blocks of 4 rows, so each weight row is read once per 4 rows and each gradient row written once per 4
 * (the same sums as row by row, in another order).
 */
function denseBatchLoss(
  network: Network,
  X: Extract<FeatureMatrix, { kind: 'dense' }>,
  labels: ArrayLike<number>,
  rows: ArrayLike<number>,
  classWeights: ArrayLike<number>,
  pass: NetworkPass,
  grad?: NetworkGradient,
  dropout?: DropoutDraw,
): number {
  const { first, second, standardizer } = network;
  const d = X.dims;
  const C = network.classes;
  const width = first.classes;
  const H = network.hidden;
  const batch = rows.length;
  const { x: xs, z1: Z1, h: Hs, delta: D, delta1: D1 } = pass.chunk;
  const data = X.data;
  const keep = dropout && dropout.rate > 0 ? 1 / (1 - dropout.rate) : 1;
  grad?.reset();
  let loss = 0;
  for (let start = 0; start < batch; start += CHUNK) {
    const count = Math.min(CHUNK, batch - start);
    // Standardised inputs of the chunk.
    for (let r = 0; r < count; r++) {
      const base = (rows[start + r] as number) * d;
      const o = r * d;
      if (standardizer) {
        const { mean, scale } = standardizer;
        for (let j = 0; j < d; j++) {
          xs[o + j] = ((data[base + j] as number) - (mean[j] as number)) * (scale[j] as number);
        }
      } else {
        for (let j = 0; j < d; j++) xs[o + j] = data[base + j] as number;
      }
    }
    blockedAffine(xs, count, d, first.weights, first.bias, Z1, width);
    // The outputs: the first layer's, or the hidden layer's (ReLU, dropout) times the second.
    let Z = Z1;
    if (second) {
      for (let r = 0; r < count; r++) {
        for (let k = 0; k < H; k++) {
          let v = Math.max(Z1[r * H + k] as number, 0);
          if (dropout && dropout.rate > 0) v = dropout.rng.next() < dropout.rate ? 0 : v * keep;
          Hs[r * H + k] = v;
        }
      }
      blockedAffine(Hs, count, H, second.weights, second.bias, D, C);
      Z = D;
    }
    // Softmax cross-entropy; D becomes dL/dlogits.
    for (let r = 0; r < count; r++) {
      const y = labels[rows[start + r] as number] as number;
      const w = classWeights[y] as number;
      loss += crossEntropyRow(Z, D, r * C, C, y, w, batch, grad !== undefined);
    }
    if (!grad) continue;
    let firstDelta = D;
    if (second && grad.secondWeights && grad.secondBias) {
      blockedOuterAdd(Hs, D, count, H, C, grad.secondWeights, grad.secondBias);
      const W2 = second.weights;
      for (let r = 0; r < count; r++) {
        for (let k = 0; k < H; k++) {
          // h > 0 exactly where the unit was active and kept: there dh/dz1 = the dropout scale, h / z1.
          const hk = Hs[r * H + k] as number;
          if (hk === 0) {
            D1[r * H + k] = 0;
            continue;
          }
          let s = 0;
          const p = k * C;
          for (let c = 0; c < C; c++) s += (W2[p + c] as number) * (D[r * C + c] as number);
          D1[r * H + k] = (s * hk) / (Z1[r * H + k] as number);
        }
      }
      firstDelta = D1;
    }
    blockedOuterAdd(xs, firstDelta, count, d, width, grad.firstWeights as Float64Array, grad.firstBias);
  }
  return loss / batch;
}

/** Z[r] = b + X[r] W for `count` rows of width `d` (W row-major [d, C]), four rows per pass over W. */
function blockedAffine(
  X: Float64Array,
  count: number,
  d: number,
  W: Float32Array,
  b: Float32Array,
  Z: Float64Array,
  C: number,
): void {
  for (let r = 0; r < count; r++) for (let c = 0; c < C; c++) Z[r * C + c] = b[c] as number;
  let r = 0;
  for (; r + 4 <= count; r += 4) {
    const x0 = r * d;
    const x1 = x0 + d;
    const x2 = x1 + d;
    const x3 = x2 + d;
    const z0 = r * C;
    const z1 = z0 + C;
    const z2 = z1 + C;
    const z3 = z2 + C;
    for (let j = 0; j < d; j++) {
      const v0 = X[x0 + j] as number;
      const v1 = X[x1 + j] as number;
      const v2 = X[x2 + j] as number;
      const v3 = X[x3 + j] as number;
      if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0) continue;
      const p = j * C;
      for (let c = 0; c < C; c++) {
        const w = W[p + c] as number;
        Z[z0 + c] = (Z[z0 + c] as number) + v0 * w;
        Z[z1 + c] = (Z[z1 + c] as number) + v1 * w;
        Z[z2 + c] = (Z[z2 + c] as number) + v2 * w;
        Z[z3 + c] = (Z[z3 + c] as number) + v3 * w;
      }
    }
  }
  for (; r < count; r++) {
    const xo = r * d;
    const zo = r * C;
    for (let j = 0; j < d; j++) {
      const v = X[xo + j] as number;
      if (v === 0) continue;
      const p = j * C;
      for (let c = 0; c < C; c++) Z[zo + c] = (Z[zo + c] as number) + v * (W[p + c] as number);
    }
  }
}

/** G += X^T D and gb += the column sums of D, for `count` rows (X [count, d], D [count, C]), four rows at a time. */
function blockedOuterAdd(
  X: Float64Array,
  D: Float64Array,
  count: number,
  d: number,
  C: number,
  G: Float64Array,
  gb: Float64Array,
): void {
  for (let r = 0; r < count; r++)
    for (let c = 0; c < C; c++) gb[c] = (gb[c] as number) + (D[r * C + c] as number);
  let r = 0;
  for (; r + 4 <= count; r += 4) {
    const x0 = r * d;
    const x1 = x0 + d;
    const x2 = x1 + d;
    const x3 = x2 + d;
    const d0 = r * C;
    const d1 = d0 + C;
    const d2 = d1 + C;
    const d3 = d2 + C;
    for (let j = 0; j < d; j++) {
      const v0 = X[x0 + j] as number;
      const v1 = X[x1 + j] as number;
      const v2 = X[x2 + j] as number;
      const v3 = X[x3 + j] as number;
      if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0) continue;
      const p = j * C;
      for (let c = 0; c < C; c++) {
        G[p + c] =
          (G[p + c] as number) +
          v0 * (D[d0 + c] as number) +
          v1 * (D[d1 + c] as number) +
          v2 * (D[d2 + c] as number) +
          v3 * (D[d3 + c] as number);
      }
    }
  }
  for (; r < count; r++) {
    const xo = r * d;
    const dOff = r * C;
    for (let j = 0; j < d; j++) {
      const v = X[xo + j] as number;
      if (v === 0) continue;
      const p = j * C;
      for (let c = 0; c < C; c++) G[p + c] = (G[p + c] as number) + v * (D[dOff + c] as number);
    }
  }
}

/** Class-weighted mean cross-entropy over every row of `X`, `sum_i w[y_i] CE_i / sum_i w[y_i]` (no dropout). */
export function networkLoss(
  network: Network,
  X: FeatureMatrix,
  labels: Int32Array,
  classWeights: ArrayLike<number>,
  pass = new NetworkPass(network),
): number {
  const n = labels.length;
  if (n === 0) return 0;
  let weightSum = 0;
  for (let i = 0; i < n; i++) weightSum += classWeights[labels[i] as number] as number;
  if (weightSum === 0) return 0;
  const rows = Int32Array.from({ length: n }, (_, i) => i);
  return (networkBatchLoss(network, X, labels, rows, classWeights, pass) * n) / weightSum;
}

/** The logits of every row of `X`, one Float64Array per row. */
export function networkLogits(network: Network, X: FeatureMatrix): Float64Array[] {
  const pass = new NetworkPass(network);
  const n = X.kind === 'sparse' ? X.rows.length : X.rows;
  return Array.from({ length: n }, (_, i) => forwardRow(network, X, i, pass).slice());
}

export interface LabelledMatrix {
  X: FeatureMatrix;
  labels: Int32Array;
}

export interface FitNetworkOptions {
  classes: number;
  hyperparameters: NetworkHyperparameters;
  classWeights: Float64Array;
  /** Standardisation of dense inputs (from the training rows); ignored for sparse inputs. */
  standardizer?: Standardizer | undefined;
  seed: number;
  signal?: AbortSignal | undefined;
  onEpoch?: ((record: EpochRecord) => void) | undefined;
}

export interface FitNetworkResult {
  /** The weights of the epoch with the lowest validation loss. */
  network: Network;
  bestEpoch: number;
  history: EpochRecord[];
}

const YIELD_EVERY_MS = 50;

/**
 * Mini-batch AdamW on the class-weighted cross-entropy with seeded shuffling and dropout, early stopping on the
 * validation loss (patience), keeping the best epoch's weights. The one trainer of the `logistic` (no hidden
 * layer) and `mlp` heads, on sparse and dense features alike.
 */
export async function fitNetwork(
  train: LabelledMatrix,
  validation: LabelledMatrix,
  options: FitNetworkOptions,
): Promise<FitNetworkResult> {
  const { classes, hyperparameters, classWeights, seed, signal, onEpoch } = options;
  const { learningRate, weightDecay, batchSize, maxEpochs, patience, hiddenSize, dropout } = hyperparameters;
  const X = train.X;
  const sparse = X.kind === 'sparse';
  const standardizer = sparse ? undefined : options.standardizer;
  const rng = createRng(seed);
  const n = train.labels.length;
  let meanSquaredNorm = 1;
  if (!sparse && hiddenSize > 0) {
    const pass = new Float64Array(X.dims);
    meanSquaredNorm = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < X.dims; j++) {
        const v = X.data[i * X.dims + j] as number;
        pass[j] = standardizer
          ? (v - (standardizer.mean[j] as number)) * (standardizer.scale[j] as number)
          : v;
        meanSquaredNorm += (pass[j] as number) ** 2 / n;
      }
    }
  }
  const network = createNetwork(X.dims, classes, {
    hidden: hiddenSize,
    standardizer,
    meanSquaredNorm,
    sparse,
    rng,
  });
  const best = network.clone();
  const grad = new NetworkGradient(network, sparse);
  const pass = new NetworkPass(network);
  const adamOptions = { learningRate, weightDecay };
  const firstSparse = sparse ? new SparseAdamW(network.first, adamOptions) : undefined;
  const firstDense = sparse
    ? undefined
    : new DenseAdamW(network.first.weights, network.first.bias, adamOptions);
  const second = network.second
    ? new DenseAdamW(network.second.weights, network.second.bias, adamOptions)
    : undefined;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const validationWeights = classWeights.map((w) => (w > 0 ? w : 1));
  const draw: DropoutDraw | undefined = dropout > 0 && hiddenSize > 0 ? { rate: dropout, rng } : undefined;
  const stopping = new EarlyStopping(patience, onEpoch);
  let lastYield = performance.now();

  for (let epoch = 1; epoch <= maxEpochs; epoch++) {
    shuffleInPlace(order, rng);
    let lossSum = 0;
    for (let start = 0; start < n; start += batchSize) {
      const rows = order.subarray(start, Math.min(start + batchSize, n));
      const loss = networkBatchLoss(network, X, train.labels, rows, classWeights, pass, grad, draw);
      lossSum += loss * rows.length;
      if (firstSparse && grad.firstSparse) firstSparse.update(grad.firstSparse);
      else firstDense?.update(grad.firstWeights as Float64Array, grad.firstBias);
      if (second) second.update(grad.secondWeights as Float64Array, grad.secondBias as Float64Array);
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await yieldToEventLoop();
        signal?.throwIfAborted();
        lastYield = performance.now();
      }
    }
    firstSparse?.flush();
    const trainLoss = lossSum / Math.max(n, 1);
    const validationLoss = networkLoss(network, validation.X, validation.labels, validationWeights, pass);
    const verdict = stopping.record(epoch, trainLoss, validationLoss, learningRate);
    if (verdict === 'best') best.copyFrom(network);
    else if (verdict === 'stop') break;
    await yieldToEventLoop();
    signal?.throwIfAborted();
    lastYield = performance.now();
  }
  return { network: best, bestEpoch: stopping.bestEpoch, history: stopping.history };
}
