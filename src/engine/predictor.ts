import { GraftError } from '../errors.js';
import { type ExecutionProvider, type InputTensor, OnnxSession } from '../runtime/onnx.js';
import type { BackboneConfig } from './backbone.js';
import { createImagePreparer, type ImageInput } from './backbones/image.js';
import { createTextTokenizer } from './backbones/text.js';
import { FEATURES_INPUT, PROBABILITIES_OUTPUT, readModelMetadata } from './export-onnx.js';
import { HashNgramsFeaturizer, scatterInto } from './hash-ngrams.js';
import type { RawInput } from './open-backbone.js';

export interface PredictorOptions {
  /** @default ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
  /**
   * Rows per ONNX Runtime call. @default 256 for hash, 32 for text, 64 for image; fewer when one batch of
   * model input would pass 32 MiB of float32
   */
  batchSize?: number;
}

// A batch of dense model input (hashed features, pixels) is rows x width float32: keep it under 32 MiB.
const MAX_BATCH_FLOATS = 2 ** 23;
// The largest hashed input a hash model keeps for its next batch: 64 rows, the micro-batcher's largest batch.
const MAX_KEPT_FLOATS = 2 ** 22;

/** A batch's named model inputs, and what to do once the run on them has ended (give back reused buffers). */
interface Prepared {
  feeds: Record<string, InputTensor>;
  release?: () => void;
}

/** Turns a batch of raw inputs into the model's inputs; throws BAD_REQUEST naming the bad input. */
type Prepare = (batch: readonly RawInput[], indices: readonly number[]) => Prepared;

/**
 * Serves an exported Graft model from its bytes alone: hash models hash texts in TypeScript, text models tokenise
 * with the tokenizer kept in the model's metadata, image models decode and normalise images; the rest (backbone,
 * pooling, head, softmax) runs in ONNX Runtime.
 */
export class Predictor {
  readonly labels: string[];
  readonly backbone: BackboneConfig;
  readonly temperature: number | undefined;
  /** The strategy that trained the head (absent in models of format 1). */
  readonly strategy: string | undefined;
  readonly #session: OnnxSession;
  readonly #prepare: Prepare;
  readonly #batchSize: number;
  /** The last batch given to `#run`, settled or not. */
  #previous: Promise<unknown> = Promise.resolve();

  private constructor(
    session: OnnxSession,
    metadata: ReturnType<typeof readModelMetadata>,
    prepare: Prepare,
    batchSize: number,
  ) {
    this.#session = session;
    this.labels = metadata.labels;
    this.backbone = metadata.backbone;
    this.temperature = metadata.temperature;
    this.strategy = metadata.strategy;
    this.#prepare = prepare;
    this.#batchSize = batchSize;
  }

  /** Loads a model exported by `trainClassifier`; labels, backbone and tokenizer come from its metadata. */
  static async load(onnxBytes: Uint8Array, options: PredictorOptions = {}): Promise<Predictor> {
    const metadata = readModelMetadata(onnxBytes);
    const { backbone } = metadata;
    const { executionProviders } = options;
    const { prepare, defaultBatch, rowFloats } = preparerFor(metadata);
    const batchSize = options.batchSize ?? defaultBatch;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new GraftError('INVALID_OPTIONS', `batchSize must be a positive integer; got ${batchSize}.`);
    }
    const rows = Math.max(1, Math.min(batchSize, Math.floor(MAX_BATCH_FLOATS / rowFloats)));
    const session = await OnnxSession.create(onnxBytes, executionProviders ? { executionProviders } : {});
    if (!session.outputNames.includes(PROBABILITIES_OUTPUT)) {
      await session.dispose();
      throw new GraftError(
        'BAD_REQUEST',
        `The model must give "${PROBABILITIES_OUTPUT}"; it gives ${session.outputNames.join(', ')} (backbone ${backbone.kind}).`,
      );
    }
    return new Predictor(session, metadata, prepare, rows);
  }

  /** Calibrated probabilities, one row per input, columns in `labels` order. */
  async predict(inputs: readonly RawInput[]): Promise<Float32Array[]> {
    const classes = this.labels.length;
    const out = new Array<Float32Array>(inputs.length);
    // Texts run longest first, so that a batch of a text model pads little.
    const order = inputs.map((_, i) => i);
    if (this.backbone.kind === 'text') {
      const length = (i: number) => {
        const input = inputs[i];
        return typeof input === 'string' ? input.length : 0;
      };
      order.sort((a, b) => length(b) - length(a) || a - b);
    }
    for (let start = 0; start < order.length; start += this.#batchSize) {
      const indices = order.slice(start, start + this.#batchSize);
      const batch = indices.map((i) => inputs[i] as RawInput);
      const result = await this.#run(batch, indices);
      const probabilities = result[PROBABILITIES_OUTPUT]?.data;
      if (!(probabilities instanceof Float32Array) || probabilities.length !== batch.length * classes) {
        throw new GraftError(
          'INTERNAL',
          `The model gave no ${batch.length}x${classes} float32 probabilities.`,
        );
      }
      indices.forEach((i, row) => {
        out[i] = probabilities.slice(row * classes, (row + 1) * classes);
      });
    }
    return out;
  }

  /**
   * Prepares and runs one batch once the batch before it has run. onnxruntime-node runs a call synchronously on
   * this thread, so calls never overlap anyway; preparing each batch just before its run keeps one batch of dense
   * input alive per model instead of one per waiting caller (32 callers of 64 hashed rows: 512 MB), and lets the
   * next batch reuse its buffer.
   */
  #run(batch: readonly RawInput[], indices: readonly number[]) {
    const run = this.#previous.then(async () => {
      const { feeds, release } = this.#prepare(batch, indices);
      try {
        return await this.#session.run(feeds, [PROBABILITIES_OUTPUT]);
      } finally {
        release?.();
      }
    });
    this.#previous = run.catch(() => undefined);
    return run;
  }

  /** Releases the ONNX Runtime session. */
  async dispose(): Promise<void> {
    await this.#session.dispose();
  }
}

function badInput(index: number, expected: string, value: unknown): GraftError {
  const got = value instanceof Uint8Array ? 'bytes' : value === null ? 'null' : typeof value;
  return new GraftError('BAD_REQUEST', `Input ${index} must be ${expected}; got ${got}.`, {
    details: { index },
  });
}

function preparerFor(metadata: ReturnType<typeof readModelMetadata>): {
  prepare: Prepare;
  defaultBatch: number;
  rowFloats: number;
} {
  const { backbone } = metadata;
  switch (backbone.kind) {
    case 'hash': {
      const featurizer = new HashNgramsFeaturizer(backbone);
      const { dims } = backbone;
      const buffers = new ZeroedBuffers();
      const prepare: Prepare = (batch, indices) => {
        const rows = batch.map((text, row) => {
          if (typeof text !== 'string') throw badInput(indices[row] ?? row, 'a string', text);
          return featurizer.featurize(text);
        });
        const floats = rows.length * dims;
        const buffer = buffers.take(floats);
        const data = buffer.length === floats ? buffer : buffer.subarray(0, floats);
        rows.forEach((vector, row) => {
          scatterInto(vector, data, row, dims);
        });
        return {
          feeds: { [FEATURES_INPUT]: { type: 'float32', data, dims: [rows.length, dims] } },
          release: () => {
            // A row sets a few hundred of its 2^16 entries: zeroing those is far cheaper than the whole buffer.
            rows.forEach((vector, row) => {
              for (const index of vector.indices) data[row * dims + index] = 0;
            });
            buffers.give(buffer);
          },
        };
      };
      return { prepare, defaultBatch: 256, rowFloats: dims };
    }
    case 'text': {
      const tokenizer = createTextTokenizer(backbone, metadata.tokenizer ?? { tokenizerJson: '' });
      const prepare: Prepare = (batch, indices) => {
        batch.forEach((text, row) => {
          if (typeof text !== 'string') throw badInput(indices[row] ?? row, 'a string', text);
        });
        return { feeds: tokenizer.prepare(batch as string[]) };
      };
      return { prepare, defaultBatch: 32, rowFloats: 1 };
    }
    case 'image': {
      const preparer = createImagePreparer(backbone.input);
      const { channels, width, height } = backbone.input;
      const prepare: Prepare = (batch, indices) => {
        batch.forEach((image, row) => {
          if (typeof image === 'string')
            throw badInput(indices[row] ?? row, 'an image (PNG or JPEG bytes)', image);
        });
        try {
          return { feeds: preparer(batch as ImageInput[]) };
        } catch (err) {
          const index = (err as GraftError).details?.index;
          const at = typeof index === 'number' ? indices[index] : undefined;
          if (err instanceof GraftError && at !== undefined) {
            throw new GraftError(err.code, err.message.replace(/^Image \d+:/, `Image ${at}:`), {
              cause: err,
              details: { index: at },
            });
          }
          throw err;
        }
      };
      return { prepare, defaultBatch: 64, rowFloats: channels * width * height };
    }
  }
}

/**
 * An all-zero float32 buffer for hashed model input, reused instead of allocating and zero-filling 2^16 floats
 * (256 KB) per row and call. A buffer is its taker's alone until it gives it back, zeroed again, once the run that
 * read it has ended: a run in flight never shares its input.
 */
class ZeroedBuffers {
  #kept: Float32Array | undefined;

  /** The kept buffer when it holds at least `floats` floats, else a new one of exactly that many. */
  take(floats: number): Float32Array {
    const kept = this.#kept;
    if (!kept || kept.length < floats) return new Float32Array(floats);
    this.#kept = undefined;
    return kept;
  }

  /** Takes back a buffer that is all zeros again; the largest one up to MAX_KEPT_FLOATS is kept. */
  give(buffer: Float32Array): void {
    if (buffer.length <= MAX_KEPT_FLOATS && buffer.length > (this.#kept?.length ?? 0)) this.#kept = buffer;
  }
}
