import { describe, expect, it } from 'vitest';
import { fitTemperature, softmax, temperatureNll } from '../src/engine/calibration.js';
import { computeMetrics, stratifiedSplit } from '../src/engine/index.js';
import { predictionScores } from '../src/engine/metrics.js';
import { createRng } from '../src/engine/rng.js';
import { pairedStandardError, SELECTION_BOOTSTRAP_ROUNDS, selectTrial } from '../src/engine/train.js';

const rows = (...values: number[][]) => values.map((v) => Float32Array.from(v));

describe('computeMetrics', () => {
  // Six rows, three labels, worked by hand:
  //   row  true  probabilities      predicted  confidence  correct
  //   0    a     .7  .2  .1         a          .7          yes
  //   1    a     .3  .6  .1         b          .6          no
  //   2    b     .2  .5  .3         b          .5          yes
  //   3    b     .1  .8  .1         b          .8          yes
  //   4    c     .25 .25 .5         c          .5          yes
  //   5    c     .6  .1  .3         a          .6          no
  const labels = ['a', 'b', 'c'];
  const yTrue = [0, 0, 1, 1, 2, 2];
  const probabilities = rows(
    [0.7, 0.2, 0.1],
    [0.3, 0.6, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.8, 0.1],
    [0.25, 0.25, 0.5],
    [0.6, 0.1, 0.3],
  );

  it('matches the hand computation', () => {
    const m = computeMetrics(yTrue, probabilities, labels);
    expect(m.n).toBe(6);
    expect(m.labels).toEqual(labels);
    expect(m.accuracy).toBeCloseTo(4 / 6, 12);
    expect(m.confusionMatrix).toEqual([
      [1, 1, 0],
      [0, 2, 0],
      [1, 0, 1],
    ]);
    // a: P = 1/2, R = 1/2; b: P = 2/3, R = 1, F1 = 0.8; c: P = 1, R = 1/2, F1 = 2/3
    expect(m.perClass.a).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
    expect(m.perClass.b?.precision).toBeCloseTo(2 / 3, 12);
    expect(m.perClass.b?.recall).toBe(1);
    expect(m.perClass.b?.f1).toBeCloseTo(0.8, 12);
    expect(m.perClass.c?.f1).toBeCloseTo(2 / 3, 12);
    expect(m.macroF1).toBeCloseTo((0.5 + 0.8 + 2 / 3) / 3, 6);
    // -mean ln p(true): ln .7, ln .3, ln .5, ln .8, ln .5, ln .3 (float32 inputs: 1e-6)
    const logLoss =
      -(Math.log(0.7) + Math.log(0.3) + Math.log(0.5) + Math.log(0.8) + Math.log(0.5) + Math.log(0.3)) / 6;
    expect(m.logLoss).toBeCloseTo(logLoss, 6);
    // 15 bins: {.7 right}, {.6 wrong, .6 wrong}, {.5 right, .5 right}, {.8 right}
    // ECE = (|1 - .7| + |0 - 1.2| + |2 - 1.0| + |1 - .8|) / 6 = 2.7 / 6
    expect(m.ece).toBeCloseTo(0.45, 6);
  });

  it('leaves labels neither true nor predicted out of macro-F1', () => {
    const padded = probabilities.map((p) => Float32Array.of(...p, 0));
    const m = computeMetrics(yTrue, padded, [...labels, 'd']);
    expect(m.perClass.d).toEqual({ precision: 0, recall: 0, f1: 0, support: 0 });
    expect(m.macroF1).toBeCloseTo((0.5 + 0.8 + 2 / 3) / 3, 6);
  });

  it('treats a label named __proto__ as a label', () => {
    const proto = '__proto__';
    const m = computeMetrics([0, 1], rows([0.9, 0.1], [0.2, 0.8]), [proto, 'x']);
    expect(Object.keys(m.perClass)).toEqual([proto, 'x']);
    expect(Object.getOwnPropertyDescriptor(m.perClass, proto)?.value.f1).toBe(1);
    expect(Object.getPrototypeOf(m.perClass)).toBe(Object.prototype);
  });

  it('refuses rows of the wrong width', () => {
    expect(() => computeMetrics([0], rows([1, 0]), labels)).toThrowError(/3 probabilities/);
  });
});

/** Seeded labels and predictions of `classes` labels, each prediction right with probability `hit`. */
function guesses(n: number, classes: number, hit: number, seed: number, y?: Int32Array) {
  const rng = createRng(seed);
  const truth = y ?? Int32Array.from({ length: n }, () => rng.int(classes));
  const predicted = Int32Array.from(truth, (t) => (rng.next() < hit ? t : rng.int(classes)));
  return { y: truth, predicted };
}

const oneHot = (predicted: ArrayLike<number>, classes: number) =>
  Array.from(predicted, (p) => Float64Array.from({ length: classes }, (_, c) => (c === p ? 1 : 0)));

describe('predictionScores', () => {
  it('agrees with computeMetrics on one-hot rows, labels never seen included', () => {
    const classes = 7;
    const { y, predicted } = guesses(300, classes - 1, 0.6, 11);
    const names = Array.from({ length: classes }, (_, c) => `l${c}`);
    const reference = computeMetrics(Array.from(y), oneHot(predicted, classes), names);
    const got = predictionScores(y, predicted, classes);
    expect(got.accuracy).toBeCloseTo(reference.accuracy, 12);
    expect(got.macroF1).toBeCloseTo(reference.macroF1, 12);
  });

  it('weighs a row w times as w copies of it', () => {
    const classes = 4;
    const { y, predicted } = guesses(60, classes, 0.5, 12);
    const weights = Int32Array.from(y, (_, i) => i % 3);
    const copies = Array.from(y.keys()).flatMap((i) => new Array<number>(weights[i] as number).fill(i));
    const reference = computeMetrics(
      copies.map((i) => y[i] as number),
      oneHot(
        copies.map((i) => predicted[i] as number),
        classes,
      ),
      ['a', 'b', 'c', 'd'],
    );
    const got = predictionScores(y, predicted, classes, weights);
    expect(got.accuracy).toBeCloseTo(reference.accuracy, 12);
    expect(got.macroF1).toBeCloseTo(reference.macroF1, 12);
  });
});

describe("pairedStandardError (the bootstrap behind auto's choice)", () => {
  it('equals a naive bootstrap that copies the resampled rows and scores them with computeMetrics', () => {
    const classes = 3;
    const a = guesses(80, classes, 0.7, 21);
    const b = guesses(80, classes, 0.6, 22, a.y);
    const names = ['x', 'y', 'z'];
    // the same draws as the implementation: createRng(seed), n draws of rng.int(n) per round
    const rng = createRng(5);
    const differences: number[] = [];
    for (let r = 0; r < SELECTION_BOOTSTRAP_ROUNDS; r++) {
      const rows = Array.from({ length: 80 }, () => rng.int(80));
      const score = (p: Int32Array) =>
        computeMetrics(
          rows.map((i) => a.y[i] as number),
          oneHot(
            rows.map((i) => p[i] as number),
            classes,
          ),
          names,
        ).macroF1;
      differences.push(score(a.predicted) - score(b.predicted));
    }
    const mean = differences.reduce((s, d) => s + d, 0) / differences.length;
    const sd = Math.sqrt(differences.reduce((s, d) => s + (d - mean) ** 2, 0) / (differences.length - 1));
    expect(pairedStandardError(a.y, a.predicted, b.predicted, classes, 5)).toBeCloseTo(sd, 10);
  });

  it('is 0 for identical predictions and shrinks like 1/sqrt(n)', () => {
    const small = guesses(200, 2, 0.8, 31);
    expect(pairedStandardError(small.y, small.predicted, small.predicted, 2, 1)).toBe(0);
    const se = (n: number) => {
      const a = guesses(n, 2, 0.8, 32);
      const b = guesses(n, 2, 0.8, 33, a.y);
      return pairedStandardError(a.y, a.predicted, b.predicted, 2, 1);
    };
    // two independent 80% classifiers: sd of a per-row difference ~ sqrt(2 * .8 * .2) = 0.57
    expect(se(400)).toBeGreaterThan(0.57 / Math.sqrt(400) / 2);
    expect(se(400) / se(6400)).toBeGreaterThan(2.5);
    expect(se(400) / se(6400)).toBeLessThan(6);
  });
});

describe("auto's choice among candidates (selectTrial)", () => {
  const trial = (strategy: 'centroid' | 'logistic' | 'mlp', y: Int32Array, predicted: Int32Array) => ({
    spec: { strategy },
    predicted,
    macroF1: predictionScores(y, predicted, 4).macroF1,
  });
  const truth = guesses(300, 4, 1, 41).y;
  const probe = trial('logistic', truth, guesses(300, 4, 0.7, 42, truth).predicted);

  it('keeps the default linear probe when another candidate is better by less than one standard error', () => {
    // the MLP disagrees with the probe on 23 rows: right on 13 the probe gets wrong, wrong on 10 it gets right
    const predicted = Int32Array.from(probe.predicted);
    let fixed = 0;
    let broken = 0;
    predicted.forEach((p, i) => {
      const y = truth[i] as number;
      if (p !== y && fixed < 13) {
        predicted[i] = y;
        fixed++;
      } else if (p === y && broken < 10) {
        predicted[i] = (y + 1) % 4;
        broken++;
      }
    });
    const mlp = trial('mlp', truth, predicted);
    expect(mlp.macroF1).toBeGreaterThan(probe.macroF1);
    const { trial: kept, report } = selectTrial(
      [trial('centroid', truth, probe.predicted), probe, mlp],
      truth,
      4,
      1,
    );
    expect(kept).toBe(probe);
    expect(report.kept).toBe(1);
    expect(report.incumbent).toBe(1);
    expect(report.challenger?.index).toBe(2);
    expect(report.challenger?.margin).toBeLessThanOrEqual(report.challenger?.standardError as number);
    expect(report.reason).toMatch(/within one standard error/);
  });

  it('takes the best candidate that beats the probe by more than one standard error', () => {
    const good = trial('mlp', truth, guesses(300, 4, 0.9, 43, truth).predicted);
    const better = trial('centroid', truth, guesses(300, 4, 0.95, 44, truth).predicted);
    const { trial: kept, report } = selectTrial([probe, good, better], truth, 4, 1);
    expect(kept).toBe(better);
    expect(report.kept).toBe(2);
    expect(report.reason).toMatch(/more than one standard error/);
  });

  it('takes the best when no linear probe was tried', () => {
    const good = trial('mlp', truth, guesses(300, 4, 0.9, 43, truth).predicted);
    const { trial: kept } = selectTrial([trial('centroid', truth, probe.predicted), good], truth, 4, 1);
    expect(kept).toBe(good);
  });
});

describe('temperature scaling', () => {
  // Labels drawn from softmax(z); the model reports `scale * z`: overconfident when scale > 1.
  function toy(scale: number) {
    const rng = createRng(21);
    const logits: Float64Array[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const z = Float64Array.from({ length: 4 }, () => (rng.next() - 0.5) * 4);
      const p = softmax(z);
      let u = rng.next();
      let y = 0;
      while (y < 3 && u >= (p[y] as number)) u -= p[y++] as number;
      labels.push(y);
      logits.push(z.map((v) => v * scale));
    }
    return { logits, labels };
  }

  it.each([
    [3, 'overconfident'],
    [0.4, 'underconfident'],
  ])('recovers T ~ %s on a %s toy and lowers the NLL', (scale) => {
    const { logits, labels } = toy(scale);
    const t = fitTemperature(logits, labels);
    expect(t / scale).toBeGreaterThan(0.85);
    expect(t / scale).toBeLessThan(1.15);
    expect(temperatureNll(logits, labels, t)).toBeLessThan(temperatureNll(logits, labels, 1) - 0.01);
  });

  it('finds the minimum of the NLL in log T (neighbours are no better)', () => {
    const { logits, labels } = toy(2);
    const t = fitTemperature(logits, labels);
    const at = (x: number) => temperatureNll(logits, labels, x);
    expect(at(t)).toBeLessThanOrEqual(at(t * 1.01) + 1e-12);
    expect(at(t)).toBeLessThanOrEqual(at(t / 1.01) + 1e-12);
  });

  it('keeps T away from 0 on a perfectly classified validation set when the targets are smoothed', () => {
    // given 200 rows, every one right by a margin of 3 to 6
    const rng = createRng(2);
    const labels = Array.from({ length: 200 }, (_, i) => i % 2);
    const logits = labels.map((y) => {
      const z = new Float64Array(2);
      z[y] = 3 + rng.next() * 3;
      return z;
    });
    // when / then: the plain NLL always prefers a sharper model, down to where it is flat (1e-14)
    expect(fitTemperature(logits, labels)).toBeLessThan(0.1);
    // the smoothed targets (201/202) stop where the mean confidence is about that sure
    const t = fitTemperature(logits, labels, { smoothTargets: true });
    const meanConfidence =
      logits.reduce((s, z, i) => s + (softmax(z, t)[labels[i] as number] as number), 0) / 200;
    expect(t).toBeGreaterThan(0.3);
    expect(meanConfidence).toBeGreaterThan(0.99);
    expect(meanConfidence).toBeLessThan(0.9999);
  });

  it('computes the soft-target cross-entropy by hand', () => {
    // one row, logits [0, ln 3], label 1, target .9 on it and .1 on label 0: p = [.25, .75]
    const nll = temperatureNll([Float64Array.of(0, Math.log(3))], [1], 1, [0.9]);
    expect(nll).toBeCloseTo(-(0.9 * Math.log(0.75) + 0.1 * Math.log(0.25)), 12);
  });

  it('gives T = 1 for no rows', () => {
    expect(fitTemperature([], [])).toBe(1);
  });
});

describe('stratifiedSplit', () => {
  const data = [
    ...Array.from({ length: 50 }, (_, i) => ({ text: `a${i}`, label: 'a' })),
    ...Array.from({ length: 7 }, (_, i) => ({ text: `b${i}`, label: 'b' })),
    { text: 'c0', label: 'c' },
    { text: 'c1', label: 'c' },
    { text: 'd0', label: 'd' },
  ];

  it('gives every label with 2+ rows a validation row, keeps single rows in train, and loses nothing', () => {
    const { train, validation } = stratifiedSplit(data, { validationFraction: 0.2, seed: 1 });
    const count = (rows: typeof data, label: string) => rows.filter((r) => r.label === label).length;
    expect(count(validation, 'a')).toBe(10);
    expect(count(validation, 'b')).toBe(1);
    expect(count(validation, 'c')).toBe(1);
    expect(count(validation, 'd')).toBe(0);
    expect(count(train, 'd')).toBe(1);
    expect(train.length + validation.length).toBe(data.length);
    expect(new Set([...train, ...validation]).size).toBe(data.length);
    // original order kept
    expect(train.map((r) => data.indexOf(r))).toEqual(
      [...train.map((r) => data.indexOf(r))].sort((x, y) => x - y),
    );
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = stratifiedSplit(data, { seed: 5 });
    const b = stratifiedSplit(data, { seed: 5 });
    const c = stratifiedSplit(data, { seed: 6 });
    expect(a).toEqual(b);
    expect(a.validation.map((r) => r.text)).not.toEqual(c.validation.map((r) => r.text));
  });

  it('refuses a fraction outside (0, 1)', () => {
    expect(() => stratifiedSplit(data, { validationFraction: 1 })).toThrowError(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }) as unknown as Error,
    );
  });
});
