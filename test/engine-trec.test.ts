import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Example,
  HASH_NGRAMS,
  openBackbone,
  Predictor,
  stratifiedSplit,
  trainClassifier,
} from '../src/engine/index.js';
import { SHARED_DIR } from './support/fixtures.js';

const trecDir = path.join(SHARED_DIR, 'datasets/trec');
const exists = existsSync(path.join(trecDir, 'train.jsonl'));

if (!exists) console.log(`engine trec test skipped: ${trecDir} does not exist`);

const readJsonl = (file: string): Example[] =>
  readFileSync(path.join(trecDir, file), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Example);

describe.skipIf(!exists)('engine on TREC question types (../shared/datasets/trec)', () => {
  it('trains with auto on train.jsonl and predicts test.jsonl with accuracy >= 0.87 (TF-IDF + LR: 0.882)', async () => {
    // given
    const rows = readJsonl('train.jsonl');
    const test = readJsonl('test.jsonl');
    const labels = [...new Set(rows.map((row) => row.label))].sort();
    const { train, validation } = stratifiedSplit(rows, { validationFraction: 0.1, seed: 42 });
    const backbone = await openBackbone(HASH_NGRAMS);
    const features = async (set: Example[]) => ({
      features: await backbone.extract(set.map((row) => row.text)),
      labels: set.map((row) => row.label),
    });
    // when
    const result = await trainClassifier(await features(train), await features(validation), {
      backbone,
      labels,
      seed: 42,
      validationInputs: validation.map((row) => row.text),
    });
    const predictor = await Predictor.load(result.onnx);
    const probabilities = await predictor.predict(test.map((row) => row.text));
    await predictor.dispose();
    // then
    const correct = probabilities.filter(
      (p, i) => labels[p.indexOf(Math.max(...p))] === test[i]?.label,
    ).length;
    const accuracy = correct / test.length;
    console.log(
      `engine trec: test accuracy ${(accuracy * 100).toFixed(1)}% on ${test.length} rows, validation macro-F1 ${result.metrics.macroF1.toFixed(3)}, ` +
        `ECE ${result.metrics.ece.toFixed(3)}, T ${result.temperature.toFixed(2)}, class weights ${result.classWeights}, ` +
        `${result.strategy} ${JSON.stringify(result.hyperparameters)}, epoch ${result.epochs}, ${Math.round(result.timingsMs.engineMs ?? 0)} ms`,
    );
    expect(test).toHaveLength(500);
    expect(accuracy).toBeGreaterThanOrEqual(0.87);
    expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  });
});
