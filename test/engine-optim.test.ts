import { describe, expect, it } from 'vitest';
import { SparseAdamW } from '../src/engine/adamw.js';
import type { SparseVector } from '../src/engine/hash-ngrams.js';
import {
  Network,
  NetworkGradient,
  NetworkPass,
  networkBatchLoss,
  networkLoss,
} from '../src/engine/network.js';
import { createRng, shuffleInPlace } from '../src/engine/rng.js';
import { balancedClassWeights, SoftmaxHead, SparseGradient } from '../src/engine/softmax-head.js';
import { fitLogistic, type SparseDataset } from '../src/engine/train-logistic.js';

/** A gradient with every weight row set from a dense dims x classes array. */
function denseGradient(dims: number, classes: number, weights: number[], bias: number[]): SparseGradient {
  const grad = new SparseGradient(dims, classes);
  for (let j = 0; j < dims; j++) {
    const offset = grad.offsetOf(j);
    for (let c = 0; c < classes; c++) grad.values[offset + c] = weights[j * classes + c] as number;
  }
  grad.bias.set(bias);
  return grad;
}

function sparse(entries: [number, number][]): SparseVector {
  const sorted = [...entries].sort((a, b) => a[0] - b[0]);
  return { indices: Int32Array.from(sorted, ([i]) => i), values: Float32Array.from(sorted, ([, v]) => v) };
}

/** A linear softmax head as the trainer runs it: a network without a hidden layer, on sparse rows. */
const linear = (head: SoftmaxHead) => new Network(head, undefined, undefined);
const sparseMatrix = (dims: number, rows: readonly SparseVector[]) => ({
  kind: 'sparse' as const,
  dims,
  rows,
});

describe('SparseAdamW', () => {
  it('takes one AdamW step as computed by hand', () => {
    // given W0, b0 and a gradient; lr 0.1, weight decay 0.01, betas 0.9/0.999, eps 1e-8
    const head = new SoftmaxHead(2, 2, Float32Array.of(0.5, -0.3, 0.2, 0.1), Float32Array.of(0.05, -0.05));
    const optimizer = new SparseAdamW(head, { learningRate: 0.1, weightDecay: 0.01 });
    const grad = denseGradient(2, 2, [0.2, -0.4, 0.05, 0], [0.1, -0.1]);
    // when
    optimizer.update(grad);
    // then: at step 1, m_hat = g and v_hat = g^2, so w1 = w0 (1 - lr wd) - lr g / (|g| + eps)
    //   0.5 * 0.999 - 0.1 * 0.2 / (0.2 + 1e-8)     =  0.399500005
    //  -0.3 * 0.999 + 0.1 * 0.4 / (0.4 + 1e-8)     = -0.1997000025
    //   0.2 * 0.999 - 0.1 * 0.05 / (0.05 + 1e-8)   =  0.09980002
    //   0.1 * 0.999 - 0 (a zero gradient moves nothing but the decay)  =  0.0999
    // biases are not decayed: 0.05 - 0.1 * 0.1 / (0.1 + 1e-8) = -0.04999999, and its mirror
    const expected = [0.399500005, -0.1997000025, 0.09980002, 0.0999];
    expected.forEach((w, i) => {
      expect(Math.abs((head.weights[i] as number) - w)).toBeLessThan(1e-6);
    });
    expect(Math.abs((head.bias[0] as number) + 0.04999999)).toBeLessThan(1e-6);
    expect(Math.abs((head.bias[1] as number) - 0.04999999)).toBeLessThan(1e-6);
  });

  it('matches a plain dense AdamW over several steps when every row has a gradient', () => {
    // given a second, dense implementation written straight from Loshchilov & Hutter / PyTorch
    const dims = 3;
    const classes = 2;
    const rng = createRng(7);
    const w0 = Array.from({ length: dims * classes }, () => rng.next() - 0.5);
    const head = new SoftmaxHead(dims, classes, Float32Array.from(w0), new Float32Array(classes));
    const optimizer = new SparseAdamW(head, { learningRate: 0.05, weightDecay: 0.1 });
    const ref = { w: [...w0], b: [0, 0], m: new Array(8).fill(0), v: new Array(8).fill(0) };
    for (let t = 1; t <= 4; t++) {
      const g = Array.from({ length: dims * classes }, () => rng.next() - 0.5);
      const gb = [rng.next() - 0.5, rng.next() - 0.5];
      // when
      optimizer.update(denseGradient(dims, classes, g, gb));
      // reference
      const all = [...g, ...gb];
      const params = [...ref.w, ...ref.b];
      params.forEach((p, i) => {
        const decayed = i < dims * classes ? p * (1 - 0.05 * 0.1) : p;
        ref.m[i] = 0.9 * ref.m[i] + 0.1 * (all[i] as number);
        ref.v[i] = 0.999 * ref.v[i] + 0.001 * (all[i] as number) ** 2;
        const mHat = ref.m[i] / (1 - 0.9 ** t);
        const vHat = ref.v[i] / (1 - 0.999 ** t);
        params[i] = decayed - (0.05 * mHat) / (Math.sqrt(vHat) + 1e-8);
      });
      ref.w = params.slice(0, dims * classes);
      ref.b = params.slice(dims * classes);
    }
    // then
    ref.w.forEach((w, i) => {
      expect(Math.abs((head.weights[i] as number) - w)).toBeLessThan(1e-6);
    });
    ref.b.forEach((b, i) => {
      expect(Math.abs((head.bias[i] as number) - b)).toBeLessThan(1e-6);
    });
  });

  it('applies the weight decay an untouched row is owed, exactly, at flush()', () => {
    // given row 1 never in a batch for 3 steps
    const head = new SoftmaxHead(2, 1, Float32Array.of(1, 0.8), new Float32Array(1));
    const optimizer = new SparseAdamW(head, { learningRate: 0.1, weightDecay: 0.5 });
    for (let t = 0; t < 3; t++) {
      const grad = new SparseGradient(2, 1);
      grad.values[grad.offsetOf(0)] = 0.3;
      optimizer.update(grad);
    }
    expect(head.weights[1]).toBeCloseTo(0.8, 7);
    // when
    optimizer.flush();
    // then
    expect(head.weights[1] as number).toBeCloseTo(0.8 * 0.95 ** 3, 7);
    optimizer.flush();
    expect(head.weights[1] as number).toBeCloseTo(0.8 * 0.95 ** 3, 7);
  });
});

describe('class-weighted softmax cross-entropy', () => {
  it('has the gradient of its finite differences (central, within 1e-4)', () => {
    // given a small head, sparse rows, and unequal class weights
    const dims = 8;
    const classes = 3;
    const rng = createRng(3);
    const head = new SoftmaxHead(
      dims,
      classes,
      Float32Array.from({ length: dims * classes }, () => rng.next() * 2 - 1),
      Float32Array.from({ length: classes }, () => rng.next() - 0.5),
    );
    const rows = [
      sparse([
        [0, 0.6],
        [3, -0.8],
      ]),
      sparse([
        [1, 0.5],
        [3, 0.5],
        [5, 0.7],
      ]),
      sparse([
        [0, 1],
        [6, 0.2],
      ]),
      sparse([[5, -1]]),
    ];
    const labels = Int32Array.of(0, 2, 1, 2);
    const classWeights = [2, 0.5, 1.25];
    const network = linear(head);
    const X = sparseMatrix(dims, rows);
    const batch = Int32Array.from(rows.keys());
    const pass = new NetworkPass(network);
    // when
    const gradient = new NetworkGradient(network, true);
    const loss = networkBatchLoss(network, X, labels, batch, classWeights, pass, gradient);
    const grad = gradient.firstSparse as SparseGradient;
    // then
    expect(loss).toBeGreaterThan(0);
    const lossAt = () => networkBatchLoss(network, X, labels, batch, classWeights, pass);
    const h = 1e-3;
    const numeric = (params: Float32Array, i: number) => {
      const original = params[i] as number;
      params[i] = original + h;
      const up = params[i] as number;
      const lossUp = lossAt();
      params[i] = original - h;
      const down = params[i] as number;
      const lossDown = lossAt();
      params[i] = original;
      return (lossUp - lossDown) / (up - down);
    };
    for (let j = 0; j < dims; j++) {
      const slot = grad.slotOf[j] as number;
      for (let c = 0; c < classes; c++) {
        const analytic = slot < 0 ? 0 : (grad.values[slot * classes + c] as number);
        expect(Math.abs(analytic - numeric(head.weights, j * classes + c)), `dW[${j},${c}]`).toBeLessThan(
          1e-4,
        );
      }
    }
    for (let c = 0; c < classes; c++) {
      expect(Math.abs((grad.bias[c] as number) - numeric(head.bias, c)), `db[${c}]`).toBeLessThan(1e-4);
    }
    // rows 2, 4 and 7 are in no batch row: no gradient slot
    expect([2, 4, 7].map((j) => grad.slotOf[j])).toEqual([-1, -1, -1]);
  });

  it('is the mean of w[y] * -ln p[y] (by hand, one row, zero weights)', () => {
    const network = linear(new SoftmaxHead(2, 2));
    const X = sparseMatrix(2, [sparse([[0, 1]])]);
    const loss = networkBatchLoss(
      network,
      X,
      Int32Array.of(1),
      Int32Array.of(0),
      [1, 3],
      new NetworkPass(network),
    );
    expect(loss).toBeCloseTo(3 * Math.log(2), 12);
  });

  it("weighs classes n / (k * count), as scikit-learn's 'balanced'", () => {
    const weights = balancedClassWeights(Int32Array.of(0, 0, 0, 1, 2, 2), 4);
    // 6 rows, 3 classes present; class 3 has no rows
    expect(Array.from(weights)).toEqual([6 / 9, 6 / 3, 6 / 6, 0]);
  });
});

describe('fitLogistic early stopping', () => {
  it('stops `patience` epochs after the best validation loss and returns that epoch’s weights', async () => {
    // given one feature that means class 0 in 90% of training rows but only 60% of validation rows:
    // the validation loss falls while the logit climbs to ln(1.5), then rises as it heads for ln(9)
    const x = sparse([[0, 1]]);
    const rng = createRng(11);
    const trainLabels = shuffleInPlace(
      Int32Array.from({ length: 100 }, (_, i) => (i < 90 ? 0 : 1)),
      rng,
    );
    const train: SparseDataset = { rows: Array.from({ length: 100 }, () => x), labels: trainLabels };
    const validation: SparseDataset = {
      rows: Array.from({ length: 10 }, () => x),
      labels: Int32Array.from({ length: 10 }, (_, i) => (i < 6 ? 0 : 1)),
    };
    const classWeights = new Float64Array([1, 1]);
    // when
    const result = await fitLogistic(train, validation, {
      dims: 4,
      classes: 2,
      classWeights,
      seed: 1,
      hyperparameters: { learningRate: 0.002, weightDecay: 0, batchSize: 10, maxEpochs: 100, patience: 3 },
    });
    // then
    const losses = result.history.map((r) => r.validationLoss);
    const best = Math.min(...losses);
    expect(result.bestEpoch).toBeGreaterThan(1);
    expect(losses[result.bestEpoch - 1]).toBe(best);
    expect(result.history.length).toBe(result.bestEpoch + 3);
    expect(losses.at(-1) as number).toBeGreaterThan(best);
    // the weights returned are the best epoch's, not the last one's
    const X = sparseMatrix(4, validation.rows);
    expect(networkLoss(linear(result.head), X, validation.labels, classWeights)).toBeCloseTo(best, 12);
  });

  it('is deterministic for a seed', async () => {
    const rng = createRng(5);
    const rows = Array.from({ length: 60 }, (_, i) =>
      sparse([
        [i % 7, 1],
        [7 + (i % 3), rng.next()],
      ]),
    );
    const data: SparseDataset = { rows, labels: Int32Array.from(rows, (_, i) => i % 3) };
    const options = {
      dims: 16,
      classes: 3,
      classWeights: new Float64Array([1, 1, 1]),
      seed: 9,
      hyperparameters: { learningRate: 0.05, weightDecay: 1e-4, batchSize: 8, maxEpochs: 5, patience: 5 },
    };
    const a = await fitLogistic(data, data, options);
    const b = await fitLogistic(data, data, options);
    expect(Array.from(a.head.weights)).toEqual(Array.from(b.head.weights));
    expect(a.history).toEqual(b.history);
  });

  it('refuses NaN features with TRAINING_FAILED', async () => {
    const data: SparseDataset = {
      rows: [sparse([[0, 1]]), { indices: Int32Array.of(1), values: Float32Array.of(Number.NaN) }],
      labels: Int32Array.of(0, 1),
    };
    await expect(
      fitLogistic(data, data, {
        dims: 4,
        classes: 2,
        classWeights: new Float64Array([1, 1]),
        seed: 1,
        hyperparameters: { learningRate: 0.05, weightDecay: 0, batchSize: 2, maxEpochs: 2, patience: 1 },
      }),
    ).rejects.toMatchObject({ code: 'TRAINING_FAILED' });
  });
});

describe('createRng', () => {
  it('repeats its sequence for a seed and stays in [0, 1)', () => {
    const a = createRng(123);
    const b = createRng(123);
    const c = createRng(124);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(c.next()).not.toBe(xs[0]);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });
});
