import { describe, expect, it } from 'vitest';
import { parseEvalArgs, UsageError } from '../eval/args.js';
import { labelDescriptions, toJsonl } from '../eval/datasets.js';
import { meanAndSd, scorePredictions, sumConfusion } from '../eval/metrics.js';
import { encodeGreyPng } from '../eval/png.js';
import { type Aggregate, aggregate, mostAccurate, type RunRecord } from '../eval/runner.js';
import { deriveSeed, randomSubset, stratifiedSample } from '../eval/sample.js';
import { confusionPanel, escapeXml, figureSvg, learningCurvePanel } from '../eval/svg.js';
import { decodeImage } from '../src/engine/backbones/image.js';
import { computeMetrics } from '../src/engine/metrics.js';

describe('eval metrics', () => {
  it('scores predictions as computed by hand', () => {
    // given: 3 classes, 6 rows, 4 right
    const truth = ['a', 'a', 'b', 'b', 'c', 'c'];
    const predicted = ['a', 'b', 'b', 'b', 'c', 'a'];
    // when
    const s = scorePredictions(truth, predicted, ['a', 'b', 'c']);
    // then: a: P 1/2 R 1/2 F1 1/2; b: P 2/3 R 1 F1 4/5; c: P 1 R 1/2 F1 2/3
    expect(s.accuracy).toBeCloseTo(4 / 6, 12);
    expect(s.macroF1).toBeCloseTo((1 / 2 + 4 / 5 + 2 / 3) / 3, 12);
    expect(s.confusion).toEqual([
      [1, 1, 0],
      [0, 2, 0],
      [1, 0, 1],
    ]);
  });

  it('agrees with the engine metrics on one-hot predictions', () => {
    // given: a seeded random set of 200 rows over 5 labels
    const labels = ['v', 'w', 'x', 'y', 'z'];
    const truth = randomSubset(1000, 200, 7).map((i) => labels[i % 5] as string);
    const predicted = randomSubset(1000, 200, 8).map((i) => labels[(i * 3) % 5] as string);
    // when
    const ours = scorePredictions(truth, predicted, labels);
    const engine = computeMetrics(
      truth.map((t) => labels.indexOf(t)),
      predicted.map((p) => labels.map((l) => (l === p ? 1 : 0))),
      labels,
    );
    // then
    expect(ours.accuracy).toBeCloseTo(engine.accuracy, 12);
    expect(ours.macroF1).toBeCloseTo(engine.macroF1, 12);
    expect(ours.confusion).toEqual(engine.confusionMatrix);
  });

  it('counts a label seen only in predictions, as scikit-learn does', () => {
    const s = scorePredictions(['a', 'a'], ['a', 'z'], ['a']);
    expect(s.labels).toEqual(['a', 'z']);
    expect(s.macroF1).toBeCloseTo((2 / 3 + 0) / 2, 12);
  });

  it('summarises draws', () => {
    expect(meanAndSd([1, 2, 3])).toEqual({ mean: 2, sd: 1 });
    expect(meanAndSd([5])).toEqual({ mean: 5, sd: 0 });
    expect(sumConfusion([[[1, 2]], [[3, 4]]])).toEqual([[4, 6]]);
  });

  it('aggregates runs in percent and keeps failures apart', () => {
    const base = { spec: {}, task: 't', sampleSeed: 1, trainRows: 10, testRows: 5 } as const;
    const wallMs = { upload: 0, job: 1000, predict: 0, total: 0 };
    const records = [
      { ...base, key: 'a', status: 'succeeded', accuracy: 0.5, macroF1: 0.4, chosenStrategy: 'mlp', wallMs },
      { ...base, key: 'b', status: 'succeeded', accuracy: 0.7, macroF1: 0.6, chosenStrategy: 'mlp', wallMs },
      { ...base, key: 'c', status: 'failed', error: { code: 'X', message: 'broke' }, wallMs },
    ] as unknown as RunRecord[];
    const agg = aggregate(records);
    expect(agg.succeeded).toBe(2);
    expect(agg.accuracy.mean).toBeCloseTo(60, 10);
    expect(agg.chosen).toEqual({ mlp: 2 });
    expect(agg.errors).toEqual(['t: X: broke']);
  });

  it('picks the most accurate configuration among those that succeeded, the first on ties', () => {
    const wallMs = { upload: 0, job: 0, predict: 0, total: 0 };
    const run = (status: string, accuracy?: number) =>
      aggregate([
        { task: 't', trainRows: 1, status, accuracy, macroF1: accuracy, wallMs } as unknown as RunRecord,
      ]);
    const aggs: Record<string, Aggregate> = {
      low: run('succeeded', 0.5),
      high: run('succeeded', 0.8),
      tie: run('succeeded', 0.8),
      broken: run('failed'),
    };
    expect(mostAccurate(['low', 'high', 'tie', 'broken', 'absent'], (k) => aggs[k])).toBe('high');
    expect(mostAccurate(['broken', 'absent'], (k) => aggs[k])).toBeUndefined();
  });
});

describe('eval sampling', () => {
  const labels = [...Array(50).fill('a'), ...Array(30).fill('b'), ...Array(3).fill('c')] as string[];

  it('draws at most N per class, the same rows for the same seed', () => {
    const first = stratifiedSample(labels, 8, 11);
    expect(first).toEqual(stratifiedSample(labels, 8, 11));
    expect(first.filter((i) => labels[i] === 'a')).toHaveLength(8);
    expect(first.filter((i) => labels[i] === 'b')).toHaveLength(8);
    expect(first.filter((i) => labels[i] === 'c')).toHaveLength(3);
    expect(stratifiedSample(labels, 8, 12)).not.toEqual(first);
  });

  it('derives stable, distinct seeds', () => {
    expect(deriveSeed(1, 'trec', 8, 0)).toBe(deriveSeed(1, 'trec', 8, 0));
    expect(deriveSeed(1, 'trec', 8, 0)).not.toBe(deriveSeed(1, 'trec', 8, 1));
    expect(deriveSeed(1, 'trec', 8, 0)).toBeLessThan(2 ** 31);
  });
});

describe('eval PNG encoding', () => {
  it('round-trips a grey image through the platform decoder', () => {
    const data = Uint8Array.from({ length: 28 * 28 }, (_, i) => (i * 37) % 256);
    const decoded = decodeImage(new Uint8Array(encodeGreyPng({ width: 28, height: 28, data })));
    expect([decoded.width, decoded.height]).toEqual([28, 28]);
    const grey = Array.from({ length: 28 * 28 }, (_, i) => decoded.data[i * decoded.channels]);
    expect(grey).toEqual(Array.from(data));
  });
});

describe('eval arguments', () => {
  it('reads repeated and comma-separated datasets and the options', () => {
    const o = parseEvalArgs([
      '--dataset',
      'trec,banking77',
      '--dataset',
      'sst2',
      '--shots',
      '8',
      '--no-curve',
    ]);
    expect(o.datasets).toEqual(['trec', 'banking77', 'sst2']);
    expect(o.shots).toBe(8);
    expect(o.curve).toBe(false);
    expect(o.draws).toBe(3);
    expect(o.backbone).toBe('hash-ngrams');
  });

  it('refuses what it does not know, saying what is allowed', () => {
    expect(() => parseEvalArgs(['--dataset', 'mnist'])).toThrow(UsageError);
    expect(() => parseEvalArgs(['--strategy', 'svm'])).toThrow(/one of auto/);
    expect(() => parseEvalArgs(['--shots', '0'])).toThrow(/at least 1/);
    expect(() => parseEvalArgs(['--frobnicate'])).toThrow(UsageError);
  });

  it('names a registered directory backbone text-local unless told', () => {
    expect(parseEvalArgs(['--backbone-dir', '/m']).backbone).toBe('text-local');
  });
});

describe('eval datasets', () => {
  it('describes labels for zero-shot', () => {
    expect(labelDescriptions('banking77', ['card_arrival'])).toEqual({ card_arrival: 'card arrival' });
    expect(labelDescriptions('trec', ['HUM', 'NUM'])).toEqual({ HUM: 'human', NUM: 'number' });
  });

  it('writes JSONL rows with the input field of the kind', () => {
    expect(toJsonl({ inputs: ['x'], labels: ['y'], classes: ['y'], kind: 'image' })).toBe(
      '{"image":"x","label":"y"}\n',
    );
  });
});

describe('eval SVG', () => {
  it('draws an escaped, self-contained figure', () => {
    const svg = figureSvg('a <b> & "c"', [
      confusionPanel(
        [
          [3, 1],
          [0, 4],
        ],
        ['x<y', 'z'],
        { title: 'cm' },
      ),
      learningCurvePanel(
        [
          {
            name: 's',
            points: [
              { x: 8, y: 50, sd: 2 },
              { x: 64, y: 70 },
            ],
          },
        ],
        {
          title: 'curve',
          references: [{ name: 'ref', y: 80 }],
        },
      ),
    ]);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<title>a &lt;b&gt; &amp; &quot;c&quot;</title>');
    expect(svg).toContain('x&lt;y');
    expect(svg).not.toContain('x<y');
    expect(svg.match(/<circle /g)).toHaveLength(3); // 2 points + 1 legend marker
    expect(escapeXml("'")).toBe('&apos;');
  });
});
