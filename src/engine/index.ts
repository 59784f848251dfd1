// The engine's public API: what the worker and the HTTP API call.
export { type BackboneConfig, type HashNgramsConfig, parseBackbone } from './backbone.js';
export { PROBABILITIES_OUTPUT, readModelMetadata } from './export-onnx.js';
export { HASH_NGRAMS } from './hash-ngrams.js';
export { type ClassMetrics, computeMetrics, type Metrics } from './metrics.js';
export { Predictor, type PredictorOptions } from './predictor.js';
export { stratifiedSplit } from './split.js';
export {
  AUTO_SEARCH,
  type ClassWeighting,
  DEFAULT_HYPERPARAMETERS,
  type Example,
  type Strategy,
  type TrainedClassifier,
  type TrainOptions,
  type TrainStage,
  trainClassifier,
} from './train.js';
export type { Hyperparameters } from './train-logistic.js';

import type { BackboneConfig } from './backbone.js';
import { embedHashNgrams, tokenize } from './hash-ngrams.js';

/**
 * Dense, L2-normalised vectors of texts from a backbone. `dimensions` folds them to a smaller power of two
 * (OpenAI's `dimensions` parameter); an invalid value throws INVALID_OPTIONS.
 */
export function embed(
  backbone: BackboneConfig,
  texts: string[],
  options: { dimensions?: number } = {},
): Float32Array[] {
  switch (backbone.kind) {
    case 'hash':
      return embedHashNgrams(backbone, texts, options);
  }
}

/** How many tokens the backbone sees in a text (for usage figures, as OpenAI's `prompt_tokens`). */
export function tokenCount(backbone: BackboneConfig, text: string): number {
  switch (backbone.kind) {
    case 'hash':
      return tokenize(text).length;
  }
}
