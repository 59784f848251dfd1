// The engine's public API: what the worker, the HTTP API and the evaluation call.

export { availableExecutionProviders, type ExecutionProvider } from '../runtime/onnx.js';
export {
  type BackboneConfig,
  configSha256,
  type HashNgramsConfig,
  type ImageBackboneConfig,
  isDenseBackbone,
  parseBackbone,
  type TextBackboneConfig,
} from './backbone.js';
export type { DecodedImage } from './backbones/image.js';
export { PROBABILITIES_OUTPUT, readModelMetadata } from './export-onnx.js';
export { concatFeatures, denseFeatures, type FeatureMatrix, featureRows, selectRows } from './features.js';
export { HASH_NGRAMS, type SparseVector } from './hash-ngrams.js';
export { type ClassMetrics, computeMetrics, type Metrics } from './metrics.js';
export {
  type Backbone,
  type BackboneFiles,
  type ExtractOptions,
  type OpenBackboneOptions,
  openBackbone,
  type RawInput,
} from './open-backbone.js';
export { Predictor, type PredictorOptions } from './predictor.js';
export { stratifiedKFold, stratifiedSplit } from './split.js';
export {
  AUTO_SEARCH,
  type CandidateReport,
  type ClassWeighting,
  CROSS_VALIDATE_BELOW,
  CROSS_VALIDATE_MAX_ROWS,
  CROSS_VALIDATION_FOLDS,
  DEFAULT_HYPERPARAMETERS,
  DENSE_HYPERPARAMETERS,
  type Example,
  effectiveBatchSize,
  type HeadHyperparameters,
  type HeadStrategy,
  type LabelledFeatures,
  MLP_HYPERPARAMETERS,
  PARITY_MAX_ROWS,
  PARITY_TOLERANCE,
  type SearchStep,
  type SelfTrainingOptions,
  type SelfTrainingReport,
  SPARSE_MLP_MAX_ROWS,
  STRATEGIES,
  type Strategy,
  type TrainedClassifier,
  type TrainOptions,
  type TrainStage,
  trainClassifier,
} from './train.js';
export type { Hyperparameters } from './train-logistic.js';

import { GraftError } from '../errors.js';
import type { BackboneConfig } from './backbone.js';
import { toDense } from './features.js';
import { embedHashNgrams, tokenize } from './hash-ngrams.js';
import { type Backbone, findOpenedTokenizer, type RawInput } from './open-backbone.js';

const isOpenBackbone = (value: BackboneConfig | Backbone): value is Backbone =>
  typeof (value as Backbone).extract === 'function';

/**
 * Dense, L2-normalised vectors of texts from the built-in hash backbone, computed without opening it.
 * `dimensions` folds them to a smaller power of two (OpenAI's `dimensions` parameter); an invalid value throws
 * INVALID_OPTIONS. Text and image backbones need their model: use `embedWith(openBackbone(...), ...)`.
 */
export function embed(
  backbone: BackboneConfig,
  texts: string[],
  options: { dimensions?: number } = {},
): Float32Array[] {
  if (backbone.kind !== 'hash') {
    throw new GraftError(
      'INVALID_OPTIONS',
      `embed() computes hash-ngrams vectors only; the ${backbone.kind} backbone "${backbone.name}" runs its model: use embedWith(openBackbone(config, files), inputs).`,
    );
  }
  return embedHashNgrams(backbone, texts, options);
}

/**
 * Dense, L2-normalised vectors of inputs from an open backbone (any kind), one per input. `dimensions`: hash
 * vectors are folded to that power of two (the same as hashing into that many buckets); dense vectors keep their
 * first `dimensions` values and are normalised again (as OpenAI's `dimensions`). INVALID_OPTIONS when it is not
 * between 1 and the backbone's dims (a power of two for hash).
 */
export async function embedWith(
  backbone: Backbone,
  inputs: readonly RawInput[],
  options: { dimensions?: number; signal?: AbortSignal } = {},
): Promise<Float32Array[]> {
  const { dimensions = backbone.dims, signal } = options;
  if (backbone.config.kind === 'hash') {
    const texts = inputs.map((input, i) => {
      if (typeof input !== 'string') {
        throw new GraftError('INVALID_OPTIONS', `Input ${i} must be a string; got ${typeof input}.`);
      }
      return input;
    });
    return embedHashNgrams(backbone.config, texts, { dimensions });
  }
  if (!Number.isInteger(dimensions) || dimensions < 1 || dimensions > backbone.dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `dimensions must be an integer between 1 and ${backbone.dims} (the backbone's dims); got ${dimensions}.`,
    );
  }
  const features = toDense(await backbone.extract(inputs, signal ? { signal } : {}));
  return Array.from({ length: features.rows }, (_, i) => {
    const row = features.data.slice(i * features.dims, i * features.dims + dimensions);
    let sum = 0;
    for (let j = 0; j < row.length; j++) sum += (row[j] as number) ** 2;
    const inverse = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    for (let j = 0; j < row.length; j++) row[j] = (row[j] as number) * inverse;
    return row;
  });
}

/**
 * How many tokens the backbone sees in a text (for usage figures, as OpenAI's `prompt_tokens`): hash counts its
 * word tokens; a text backbone counts tokenizer tokens (special tokens included, after truncation), which needs
 * the open backbone, or a configuration whose backbone was opened in this process (else INVALID_OPTIONS); image backbones see no text tokens (0).
 */
export function tokenCount(backbone: BackboneConfig | Backbone, text: string): number {
  const config = isOpenBackbone(backbone) ? backbone.config : backbone;
  switch (config.kind) {
    case 'hash':
      return tokenize(text).length;
    case 'text': {
      if (isOpenBackbone(backbone) && backbone.countTokens) return backbone.countTokens(text);
      const tokenizer = findOpenedTokenizer(config);
      if (tokenizer) return tokenizer.countTokens(text);
      throw new GraftError(
        'INVALID_OPTIONS',
        `Counting the tokens of text backbone "${config.name}" needs its tokenizer: pass the open backbone (or open it first).`,
      );
    }
    case 'image':
      return 0;
  }
}
