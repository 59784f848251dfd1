// Opening a backbone: the one object the engine extracts features with, whatever its kind.
import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GraftError } from '../errors.js';
import { type ExecutionProvider, type InputTensor, OnnxSession } from '../runtime/onnx.js';
import { type BackboneConfig, configSha256, parseBackbone } from './backbone.js';
import { FEATURES_OUTPUT } from './backbones/dense.js';
import { type DecodedImage, type ImageInput, loadImageBackbone } from './backbones/image.js';
import { buildTextGraph, createTextTokenizer, embedTexts, type TextTokenizer } from './backbones/text.js';
import type { TokenizerFiles } from './export-onnx.js';
import type { FeatureMatrix } from './features.js';
import { HashNgramsFeaturizer, type SparseVector } from './hash-ngrams.js';

/** One input row: a text (hash and text backbones), or an image as PNG/JPEG bytes or decoded pixels. */
export type RawInput = string | Uint8Array | DecodedImage;

/** The files a text or image backbone is opened from (what the store holds; hash backbones need none). */
export interface BackboneFiles {
  /** Text: `onnx/model.onnx`; image: the original (uncut) model. */
  model?: Uint8Array;
  /** Text: `tokenizer.json`. */
  tokenizerJson?: string;
  /** Text: `tokenizer_config.json` (pad token), when the layout has it. */
  tokenizerConfigJson?: string;
}

export interface ExtractOptions {
  /** Rows per ONNX Runtime call (dense backbones). @default 32 for text, 64 for images */
  batchSize?: number;
  /** Called with the fraction of rows done, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Checked between batches; on abort, `signal.reason` is thrown. */
  signal?: AbortSignal;
}

/** A frozen feature extractor, opened from its configuration (and files): `extract`, then `dispose`. */
export interface Backbone {
  readonly config: BackboneConfig;
  readonly dims: number;
  /** Features of the inputs, in input order: sparse for hash, dense for text and image. */
  extract(inputs: readonly RawInput[], options?: ExtractOptions): Promise<FeatureMatrix>;
  /** Releases the ONNX Runtime session (dense backbones); safe to call twice. */
  dispose(): Promise<void>;
  /** Dense backbones: the graph (inputs as the backbone feeds them, one output `features` [N, dims]) a head is grafted onto. */
  readonly graph?: Uint8Array | undefined;
  /** Text backbones: the tokenizer files, kept in every exported model. */
  readonly tokenizer?: TokenizerFiles | undefined;
  /** Text backbones: tokens seen for a text, special tokens included, after truncation. */
  countTokens?(text: string): number;
}

export interface OpenBackboneOptions {
  /** @default ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
}

/**
 * Opens a backbone: `hash` needs no files; `text` needs `model` and `tokenizerJson` (+ `tokenizerConfigJson`
 * when the layout has it); `image` needs `model`. The files must be the ones the configuration was made from
 * (their SHA-256 is checked): INVALID_OPTIONS otherwise, BACKBONE_NOT_FOUND when a file is missing.
 */
export async function openBackbone(
  config: BackboneConfig,
  files: BackboneFiles = {},
  options: OpenBackboneOptions = {},
): Promise<Backbone> {
  const parsed = parseBackbone(config);
  const { executionProviders = ['cpu'] } = options;
  switch (parsed.kind) {
    case 'hash':
      return new HashBackbone(parsed);
    case 'text': {
      if (!files.model || files.tokenizerJson === undefined) {
        throw new GraftError(
          'BACKBONE_NOT_FOUND',
          `Text backbone "${parsed.name}" needs its files: ${files.model ? '' : 'onnx/model.onnx '}${files.tokenizerJson === undefined ? 'tokenizer.json' : ''}`.trim() +
            ' missing.',
        );
      }
      checkSha256(parsed.name, files.model, parsed.sha256);
      const built = buildTextGraph(files.model, { pooling: parsed.pooling, normalize: parsed.normalize });
      if (built.dims !== parsed.dims || built.inputNames.join() !== parsed.inputNames.join()) {
        throw new GraftError(
          'INVALID_OPTIONS',
          `Text backbone "${parsed.name}": the model gives ${built.dims} features from ${built.inputNames.join(', ')}; the configuration says ${parsed.dims} from ${parsed.inputNames.join(', ')}.`,
        );
      }
      const tokenizer: TokenizerFiles = {
        tokenizerJson: files.tokenizerJson,
        ...(files.tokenizerConfigJson === undefined
          ? {}
          : { tokenizerConfigJson: files.tokenizerConfigJson }),
      };
      const text = createTextTokenizer(parsed, tokenizer);
      openedTokenizers.set(configSha256(parsed), text);
      const session = await OnnxSession.create(built.graph, { executionProviders });
      return new TextBackboneHandle(parsed, built.graph, tokenizer, text, session);
    }
    case 'image': {
      if (!files.model) {
        throw new GraftError('BACKBONE_NOT_FOUND', `Image backbone "${parsed.name}" needs its model file.`);
      }
      const loaded = await loadImageBackbone(files.model, { ...parsed, executionProviders });
      const session = await OnnxSession.create(loaded.graph, { executionProviders });
      return new ImageBackboneHandle(loaded.config, loaded.graph, loaded.prepare, session);
    }
  }
}

function checkSha256(name: string, model: Uint8Array, expected: string): void {
  const actual = createHash('sha256').update(model).digest('hex');
  if (actual !== expected) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${name}": the model file has SHA-256 ${actual}; the configuration expects ${expected}. Register the backbone again.`,
    );
  }
}

const notText = (index: number, value: unknown) =>
  new GraftError('INVALID_DATASET', `Input ${index} must be a text (string); got ${describe(value)}.`, {
    details: { index },
  });

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return 'bytes';
  if (value === null) return 'null';
  return typeof value;
}

const YIELD_EVERY_MS = 50;

// The tokenizers of the text backbones opened in this process, by configSha256: `tokenCount` of a bare text
// configuration counts with them. A cache, never the only copy of anything.
const openedTokenizers = new Map<string, TextTokenizer>();

/** The tokenizer of a text backbone opened in this process, by its configuration; `undefined` when none was. */
export function findOpenedTokenizer(config: BackboneConfig): TextTokenizer | undefined {
  return openedTokenizers.get(configSha256(config));
}

class HashBackbone implements Backbone {
  readonly config: BackboneConfig;
  readonly dims: number;
  readonly #featurizer: HashNgramsFeaturizer;

  constructor(config: Extract<BackboneConfig, { kind: 'hash' }>) {
    this.config = config;
    this.dims = config.dims;
    this.#featurizer = new HashNgramsFeaturizer(config);
  }

  async extract(inputs: readonly RawInput[], options: ExtractOptions = {}): Promise<FeatureMatrix> {
    const { onProgress, signal } = options;
    signal?.throwIfAborted();
    const rows: SparseVector[] = [];
    let lastYield = performance.now();
    for (const [i, input] of inputs.entries()) {
      if (typeof input !== 'string') throw notText(i, input);
      rows.push(this.#featurizer.featurize(input));
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        onProgress?.(i / inputs.length);
        await yieldToEventLoop();
        signal?.throwIfAborted();
        lastYield = performance.now();
      }
    }
    onProgress?.(1);
    return { kind: 'sparse', dims: this.dims, rows };
  }

  async dispose(): Promise<void> {}
}

class TextBackboneHandle implements Backbone {
  readonly dims: number;

  constructor(
    readonly config: Extract<BackboneConfig, { kind: 'text' }>,
    readonly graph: Uint8Array,
    readonly tokenizer: TokenizerFiles,
    readonly text: TextTokenizer,
    readonly session: OnnxSession,
  ) {
    this.dims = config.dims;
  }

  async extract(inputs: readonly RawInput[], options: ExtractOptions = {}): Promise<FeatureMatrix> {
    const { batchSize = 32, onProgress, signal } = options;
    signal?.throwIfAborted();
    inputs.forEach((input, i) => {
      if (typeof input !== 'string') throw notText(i, input);
    });
    const data = new Float32Array(inputs.length * this.dims);
    if (inputs.length > 0) {
      // embedTexts batches by length (longest first), so batches pad little; aborts between batches.
      const rows = await embedTexts(this, this.session, inputs as string[], {
        batchSize,
        onProgress: (done, total) => {
          signal?.throwIfAborted();
          onProgress?.(done / total);
        },
      });
      rows.forEach((row, i) => {
        data.set(row, i * this.dims);
      });
    }
    onProgress?.(1);
    return { kind: 'dense', dims: this.dims, rows: inputs.length, data };
  }

  prepare(texts: readonly string[]): Record<string, InputTensor> {
    return this.text.prepare(texts);
  }

  countTokens(text: string): number {
    return this.text.countTokens(text);
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}

class ImageBackboneHandle implements Backbone {
  readonly dims: number;

  constructor(
    readonly config: Extract<BackboneConfig, { kind: 'image' }>,
    readonly graph: Uint8Array,
    readonly prepare: (images: readonly ImageInput[]) => Record<string, InputTensor>,
    readonly session: OnnxSession,
  ) {
    this.dims = config.dims;
  }

  async extract(inputs: readonly RawInput[], options: ExtractOptions = {}): Promise<FeatureMatrix> {
    const { batchSize = 64, onProgress, signal } = options;
    signal?.throwIfAborted();
    const data = new Float32Array(inputs.length * this.dims);
    for (let start = 0; start < inputs.length; start += batchSize) {
      const batch = inputs.slice(start, start + batchSize).map((input, k) => {
        if (typeof input === 'string') {
          throw new GraftError('INVALID_DATASET', `Input ${start + k} must be an image; got a string.`, {
            details: { index: start + k },
          });
        }
        return input;
      });
      let feeds: Record<string, InputTensor>;
      try {
        feeds = this.prepare(batch);
      } catch (err) {
        // prepare names the index within its batch: name it within the whole input.
        const index = (err as GraftError).details?.index;
        if (err instanceof GraftError && typeof index === 'number' && start > 0) {
          throw new GraftError(err.code, err.message.replace(/^Image \d+:/, `Image ${start + index}:`), {
            cause: err,
            details: { index: start + index },
          });
        }
        throw err;
      }
      const out = (await this.session.run(feeds, [FEATURES_OUTPUT]))[FEATURES_OUTPUT];
      if (!(out?.data instanceof Float32Array) || out.data.length !== batch.length * this.dims) {
        throw new GraftError(
          'INTERNAL',
          `The backbone returned no float32 "${FEATURES_OUTPUT}" [${batch.length}, ${this.dims}] output.`,
        );
      }
      data.set(out.data, start * this.dims);
      onProgress?.(Math.min(start + batchSize, inputs.length) / inputs.length);
      signal?.throwIfAborted();
    }
    onProgress?.(1);
    return { kind: 'dense', dims: this.dims, rows: inputs.length, data };
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}
