import { GraftError } from '../errors.js';
import { type ExecutionProvider, OnnxSession } from '../runtime/onnx.js';
import type { BackboneConfig } from './backbone.js';
import { FEATURES_INPUT, PROBABILITIES_OUTPUT, readModelMetadata } from './export-onnx.js';
import { HashNgramsFeaturizer, scatterInto } from './hash-ngrams.js';

export interface PredictorOptions {
  /** @default ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
  /** Rows per ONNX Runtime call. @default 256, fewer when a batch of features would pass 32 MiB */
  batchSize?: number;
}

// A batch of dense features is rows x dims float32: keep it under 32 MiB.
const MAX_BATCH_FLOATS = 2 ** 23;

/** Serves an exported Graft model: featurises texts in TypeScript and runs the head in ONNX Runtime. */
export class Predictor {
  readonly labels: string[];
  readonly backbone: BackboneConfig;
  readonly temperature: number | undefined;
  readonly #session: OnnxSession;
  readonly #featurizer: HashNgramsFeaturizer;
  readonly #batchSize: number;

  private constructor(
    session: OnnxSession,
    labels: string[],
    backbone: BackboneConfig,
    temperature: number | undefined,
    batchSize: number,
  ) {
    this.#session = session;
    this.labels = labels;
    this.backbone = backbone;
    this.temperature = temperature;
    this.#featurizer = new HashNgramsFeaturizer(backbone);
    this.#batchSize = batchSize;
  }

  /** Loads a model exported by `trainClassifier`; labels and backbone come from its metadata. */
  static async load(onnxBytes: Uint8Array, options: PredictorOptions = {}): Promise<Predictor> {
    const { labels, backbone, temperature } = readModelMetadata(onnxBytes);
    const { executionProviders, batchSize = 256 } = options;
    const rows = Math.max(1, Math.min(batchSize, Math.floor(MAX_BATCH_FLOATS / backbone.dims)));
    const session = await OnnxSession.create(onnxBytes, executionProviders ? { executionProviders } : {});
    if (!session.inputNames.includes(FEATURES_INPUT) || !session.outputNames.includes(PROBABILITIES_OUTPUT)) {
      await session.dispose();
      throw new GraftError(
        'BAD_REQUEST',
        `The model must take "${FEATURES_INPUT}" and give "${PROBABILITIES_OUTPUT}"; it takes ${session.inputNames.join(', ')} and gives ${session.outputNames.join(', ')}.`,
      );
    }
    return new Predictor(session, labels, backbone, temperature, rows);
  }

  /** Calibrated probabilities, one row per text, columns in `labels` order. */
  async predict(texts: readonly string[]): Promise<Float32Array[]> {
    const { dims } = this.backbone;
    const classes = this.labels.length;
    const out: Float32Array[] = [];
    const features = new Float32Array(Math.min(this.#batchSize, texts.length) * dims);
    for (let start = 0; start < texts.length; start += this.#batchSize) {
      const batch = texts.slice(start, start + this.#batchSize);
      const input = features.subarray(0, batch.length * dims);
      input.fill(0);
      batch.forEach((text, row) => {
        if (typeof text !== 'string') {
          throw new GraftError('BAD_REQUEST', `Input ${start + row} must be a string; got ${typeof text}.`);
        }
        scatterInto(this.#featurizer.featurize(text), input, row, dims);
      });
      const result = await this.#session.run(
        { [FEATURES_INPUT]: { type: 'float32', data: input, dims: [batch.length, dims] } },
        [PROBABILITIES_OUTPUT],
      );
      const probabilities = result[PROBABILITIES_OUTPUT]?.data;
      if (!(probabilities instanceof Float32Array) || probabilities.length !== batch.length * classes) {
        throw new GraftError(
          'INTERNAL',
          `The model gave no ${batch.length}x${classes} float32 probabilities.`,
        );
      }
      for (let row = 0; row < batch.length; row++) {
        out.push(probabilities.slice(row * classes, (row + 1) * classes));
      }
    }
    return out;
  }

  /** Releases the ONNX Runtime session. */
  async dispose(): Promise<void> {
    await this.#session.dispose();
  }
}
