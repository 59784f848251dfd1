import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DenseAdamW } from '../src/engine/adamw.js';
import {
  concatFeatures,
  denseFeatures,
  type FeatureMatrix,
  featureRows,
  selectRows,
  toDense,
} from '../src/engine/features.js';
import type { SparseVector } from '../src/engine/hash-ngrams.js';
import {
  COSINE_SCALE,
  classMeans,
  cosineHead,
  headFromNetwork,
  headLogits,
  meanRow,
} from '../src/engine/heads.js';
import {
  fitStandardizer,
  forwardRow,
  Network,
  NetworkGradient,
  NetworkPass,
  networkBatchLoss,
  networkLogits,
} from '../src/engine/network.js';
import { createRng, type Rng } from '../src/engine/rng.js';
import { SoftmaxHead } from '../src/engine/softmax-head.js';
import { stratifiedKFold } from '../src/engine/split.js';
import { gaussian } from './support/engine-data.js';

function randomLayer(inputs: number, outputs: number, rng: Rng, scale = 1): SoftmaxHead {
  return new SoftmaxHead(
    inputs,
    outputs,
    Float32Array.from({ length: inputs * outputs }, () => scale * gaussian(rng)),
    Float32Array.from({ length: outputs }, () => 0.5 * gaussian(rng)),
  );
}

function denseMatrix(rows: number, dims: number, rng: Rng): Extract<FeatureMatrix, { kind: 'dense' }> {
  return {
    kind: 'dense',
    dims,
    rows,
    data: Float32Array.from({ length: rows * dims }, () => 2 * gaussian(rng) + 1),
  };
}

function sparseMatrix(rows: number, dims: number, rng: Rng): Extract<FeatureMatrix, { kind: 'sparse' }> {
  return {
    kind: 'sparse',
    dims,
    rows: Array.from({ length: rows }, (): SparseVector => {
      const indices = Int32Array.from(new Set(Array.from({ length: 4 }, () => rng.int(dims)))).sort();
      return { indices, values: Float32Array.from(indices, () => gaussian(rng)) };
    }),
  };
}

/** Every (array, index) parameter of a network, to perturb one at a time. */
function parameters(network: Network): [string, Float32Array][] {
  const out: [string, Float32Array][] = [
    ['first.weights', network.first.weights],
    ['first.bias', network.first.bias],
  ];
  if (network.second)
    out.push(['second.weights', network.second.weights], ['second.bias', network.second.bias]);
  return out;
}

describe('MLP gradients against finite differences', () => {
  const labels = Int32Array.of(0, 2, 1, 2, 0);
  const rows = Int32Array.of(0, 1, 2, 3, 4);
  const classWeights = Float64Array.of(1.5, 0.5, 2);

  it.each([
    ['dense input, standardised', 'dense', 0],
    ['sparse input', 'sparse', 0],
    ['dense input with dropout (the same mask every evaluation)', 'dense', 0.3],
  ] as const)('%s: analytic = central differences within 1e-5 relative', (_name, kind, dropout) => {
    // given a network with a hidden layer whose pre-activations stay away from the ReLU's kink
    const rng = createRng(11);
    const X = kind === 'dense' ? denseMatrix(5, 6, rng) : sparseMatrix(5, 12, rng);
    const standardizer = X.kind === 'dense' ? fitStandardizer(X) : undefined;
    const network = new Network(randomLayer(X.dims, 4, rng), randomLayer(4, 3, rng), standardizer);
    const pass = new NetworkPass(network);
    const loss = (grad?: NetworkGradient) =>
      networkBatchLoss(
        network,
        X,
        labels,
        rows,
        classWeights,
        pass,
        grad,
        dropout > 0 ? { rate: dropout, rng: createRng(5) } : undefined,
      );
    for (const i of rows) {
      forwardRow(network, X, i, pass);
      for (const z of pass.z1) expect(Math.abs(z)).toBeGreaterThan(1e-3);
    }
    // when
    const grad = new NetworkGradient(network, kind === 'sparse');
    // With dropout, the gradient's own pass draws the mask from the same seed as every loss evaluation.
    loss(grad);
    const analytic: Record<string, (j: number) => number> = {
      'first.weights': (j) => {
        if (!grad.firstSparse) return grad.firstWeights?.[j] as number;
        const width = network.first.classes;
        const slot = grad.firstSparse.slotOf[Math.floor(j / width)] as number;
        return slot < 0 ? 0 : (grad.firstSparse.values[slot * width + (j % width)] as number);
      },
      'first.bias': (j) => grad.firstBias[j] as number,
      'second.weights': (j) => grad.secondWeights?.[j] as number,
      'second.bias': (j) => grad.secondBias?.[j] as number,
    };
    // then
    let checked = 0;
    for (const [name, values] of parameters(network)) {
      for (let j = 0; j < values.length; j++) {
        const original = values[j] as number;
        const h = 1e-3 * Math.max(1, Math.abs(original));
        values[j] = original + h;
        const up = values[j] as number;
        const plus = loss();
        values[j] = original - h;
        const down = values[j] as number;
        const minus = loss();
        values[j] = original;
        const numeric = (plus - minus) / (up - down);
        const want = analytic[name]?.(j) as number;
        expect(Math.abs(want - numeric)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(numeric)));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });
});

describe('DenseAdamW', () => {
  it('matches PyTorch’s AdamW step written out by hand (decay on weights only, bias-corrected moments)', () => {
    // given
    const w = Float32Array.of(1, -2);
    const b = Float32Array.of(0.5);
    const optimizer = new DenseAdamW(w, b, { learningRate: 0.1, weightDecay: 0.01 });
    const grads = [
      [Float64Array.of(0.2, -0.4), Float64Array.of(1)],
      [Float64Array.of(-0.1, 0.3), Float64Array.of(-2)],
    ] as const;
    // when / then
    const ref = { w: [1, -2], b: [0.5], m: [0, 0, 0], v: [0, 0, 0] };
    grads.forEach(([gw, gb], step) => {
      optimizer.update(gw, gb);
      const t = step + 1;
      const g = [...gw, ...gb];
      const params = [...ref.w, ...ref.b];
      params.forEach((p, i) => {
        const gi = g[i] as number;
        ref.m[i] = 0.9 * (ref.m[i] as number) + 0.1 * gi;
        ref.v[i] = 0.999 * (ref.v[i] as number) + 0.001 * gi * gi;
        const mHat = (ref.m[i] as number) / (1 - 0.9 ** t);
        const vHat = (ref.v[i] as number) / (1 - 0.999 ** t);
        const decayed = i < 2 ? p * (1 - 0.1 * 0.01) : p;
        params[i] = decayed - (0.1 * mHat) / (Math.sqrt(vHat) + 1e-8);
      });
      ref.w = params.slice(0, 2);
      ref.b = params.slice(2);
      expect(w[0]).toBeCloseTo(ref.w[0] as number, 6);
      expect(w[1]).toBeCloseTo(ref.w[1] as number, 6);
      expect(b[0]).toBeCloseTo(ref.b[0] as number, 6);
    });
  });
});

describe('exported heads', () => {
  it('fold the standardisation into the first layer: same logits on raw features (1e-4)', () => {
    // given a dense network that reads standardised features
    const rng = createRng(21);
    const X = denseMatrix(20, 7, rng);
    for (let i = 0; i < X.rows; i++) X.data[i * 7 + 2] = 50 + (X.data[i * 7 + 2] as number) * 0.1; // an offset feature
    const standardizer = fitStandardizer(X);
    for (const second of [undefined, randomLayer(5, 3, rng)]) {
      const network = new Network(randomLayer(7, second ? 5 : 3, rng), second, standardizer);
      // when
      const head = headFromNetwork(network);
      // then
      expect(head.kind).toBe(second ? 'mlp' : 'linear');
      const want = networkLogits(network, X);
      headLogits(head, X).forEach((z, i) => {
        z.forEach((v, c) => {
          expect(Math.abs(v - ((want[i] as Float64Array)[c] as number))).toBeLessThan(1e-4);
        });
      });
    }
  });

  it('centroid: cosine to the class means of centred, normalised rows, times the scale (by hand)', () => {
    // given 2-d rows of two classes
    const X = denseFeatures(
      [Float32Array.of(3, 1), Float32Array.of(1, 3), Float32Array.of(5, 1), Float32Array.of(-1, 0)],
      2,
    );
    const y = Int32Array.of(0, 1, 0, 1);
    // when
    const center = meanRow(X as Extract<FeatureMatrix, { kind: 'dense' }>);
    const head = cosineHead(classMeans(X, y, 2, center), 2, { center });
    const logits = headLogits(head, denseFeatures([Float32Array.of(4, 2), Float32Array.of(2, 1.25)], 2));
    // then, by hand: center (2, 1.25); centred rows (1, -0.25), (-1, 1.75), (3, -0.25), (-3, -1.25)
    const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
    const mean = ([a0 = 0, a1 = 0]: number[], [b0 = 0, b1 = 0]: number[]) => [(a0 + b0) / 2, (a1 + b1) / 2];
    const p0 = unit(mean(unit([1, -0.25]), unit([3, -0.25])));
    const p1 = unit(mean(unit([-1, 1.75]), unit([-3, -1.25])));
    const q = unit([2, 0.75]);
    const cos = ([a0 = 0, a1 = 0]: number[], [b0 = 0, b1 = 0]: number[]) => a0 * b0 + a1 * b1;
    expect(logits[0]?.[0]).toBeCloseTo(COSINE_SCALE * cos(q, p0), 5);
    expect(logits[0]?.[1]).toBeCloseTo(COSINE_SCALE * cos(q, p1), 5);
    // a row at the centre has norm 0: it stays 0, every logit 0
    expect([...(logits[1] as Float64Array)]).toEqual([0, 0]);
  });

  it('centroid on sparse rows equals centroid on the same rows densified', () => {
    const rng = createRng(3);
    const X = sparseMatrix(9, 16, rng);
    const y = Int32Array.from({ length: 9 }, (_, i) => i % 3);
    const sparse = headLogits(cosineHead(classMeans(X, y, 3), 16), X);
    const dense = headLogits(cosineHead(classMeans(toDense(X), y, 3), 16), toDense(X));
    sparse.forEach((z, i) => {
      z.forEach((v, c) => {
        expect(v).toBeCloseTo((dense[i] as Float64Array)[c] as number, 5);
      });
    });
  });
});

describe('stratifiedKFold', () => {
  it('puts every row in one fold, spreads every label evenly, balances the folds, and is seeded', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 10, maxLength: 200 }),
        fc.integer({ min: 2, max: 7 }),
        fc.integer(),
        (labels, k, seed) => {
          fc.pre(k <= labels.length);
          const folds = stratifiedKFold(labels, { k, seed });
          expect(folds).toHaveLength(labels.length);
          expect(folds.every((f) => f >= 0 && f < k)).toBe(true);
          const sizes = new Array(k).fill(0);
          for (const f of folds) sizes[f]++;
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
          for (const label of new Set(labels)) {
            const perFold = new Array(k).fill(0);
            labels.forEach((l, i) => {
              if (l === label) perFold[folds[i] as number]++;
            });
            expect(Math.max(...perFold) - Math.min(...perFold)).toBeLessThanOrEqual(1);
          }
          expect(stratifiedKFold(labels, { k, seed })).toEqual(folds);
        },
      ),
      { numRuns: 200 },
    );
    const labels = Array.from({ length: 100 }, (_, i) => i % 4);
    expect(stratifiedKFold(labels, { seed: 1 })).not.toEqual(stratifiedKFold(labels, { seed: 2 }));
    expect(() => stratifiedKFold([0, 1, 0], { k: 5 })).toThrow(/between 2 and the 3 rows/);
  });
});

describe('feature matrices', () => {
  it('select, concatenate and count rows of either kind; refuse to mix kinds', () => {
    const rng = createRng(8);
    const dense = denseMatrix(4, 3, rng);
    const picked = selectRows(dense, [2, 0]);
    expect(featureRows(picked)).toBe(2);
    expect([...(picked as typeof dense).data.slice(0, 3)]).toEqual([...dense.data.slice(6, 9)]);
    const joined = concatFeatures(dense, picked);
    expect(featureRows(joined)).toBe(6);
    expect([...(joined as typeof dense).data.slice(12)]).toEqual([
      ...dense.data.slice(6, 9),
      ...dense.data.slice(0, 3),
    ]);
    const sparse = sparseMatrix(3, 3, rng);
    expect(featureRows(concatFeatures(sparse, selectRows(sparse, [1])))).toBe(4);
    expect(() => concatFeatures(dense, sparse)).toThrow(/different backbones/);
    expect(() => selectRows(dense, [4])).toThrow(/out of range/);
  });
});
