import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import onnxProto from 'onnx-proto';
import { z } from 'zod';
import { GraftError } from '../../errors.js';
import { NAME_PATTERN } from '../../names.js';
import type { InputTensor, OnnxSession } from '../../runtime/onnx.js';
import { type DenseBackbone, FEATURES_OUTPUT } from './dense.js';
import { parseConfig } from './parse-config.js';

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.ModelProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;

/** The token inputs a transformer encoder may take, in the order `prepare` builds them. */
export const TEXT_INPUT_NAMES = ['input_ids', 'attention_mask', 'token_type_ids'] as const;
export type TextInputName = (typeof TEXT_INPUT_NAMES)[number];

/** The hidden-state outputs we know, in order of preference (optimum's export, sentence-transformers' own). */
const HIDDEN_STATE_OUTPUTS = ['last_hidden_state', 'token_embeddings'];

/**
 * A text backbone in the Hugging Face sentence-transformer layout. Stored in a model's metadata and in the
 * backbone manifest; together with `tokenizer.json` it rebuilds `prepare` (see `createTextTokenizer`).
 */
export interface TextBackboneConfig {
  kind: 'text';
  name: string;
  /** Width of the pooled feature vector (the encoder's hidden size). */
  dims: number;
  /** Token budget per text, special tokens included; longer texts are truncated (their [SEP] is kept). */
  maxLength: number;
  pooling: 'mean' | 'cls';
  /** L2 normalisation after pooling (sentence-transformers' `Normalize` module). */
  normalize: boolean;
  /** The token inputs the backbone graph takes, which `prepare` feeds. */
  inputNames: TextInputName[];
  /** sha256 (hex) of the original `onnx/model.onnx`: the identity of the weights (cache keys, lineage). */
  sha256: string;
}

/** Validates a stored text backbone configuration (for `backboneSchema`'s discriminated union). */
export const textBackboneSchema = z.object({
  kind: z.literal('text'),
  name: z.string().regex(NAME_PATTERN, 'must be 1-63 lowercase letters, digits or "-"'),
  dims: z.number().int().min(1).max(65_536),
  maxLength: z.number().int().min(2).max(1_048_576),
  pooling: z.enum(['mean', 'cls']),
  normalize: z.boolean(),
  inputNames: z
    .array(z.enum(TEXT_INPUT_NAMES))
    .min(1)
    .refine((names) => names.includes('input_ids'), 'must include input_ids')
    .refine((names) => new Set(names).size === names.length, 'must not repeat a name'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
});

/** Parses a text backbone configuration; throws INVALID_OPTIONS saying which field is wrong. */
export function parseTextBackboneConfig(value: unknown): TextBackboneConfig {
  return parseConfig(textBackboneSchema, value, 'text backbone');
}

/** The files of a sentence-transformer layout, read by `readTextBackboneDir` and passed to `loadTextBackbone`. */
export interface TextBackboneFiles {
  /** `onnx/model.onnx` (fp32, weights inside the file). */
  model: Uint8Array;
  /** `tokenizer.json`. */
  tokenizerJson: string;
  /** `tokenizer_config.json`: model_max_length, pad token. */
  tokenizerConfigJson?: string;
  /** `1_Pooling/config.json`: the pooling mode; mean when absent. */
  poolingConfigJson?: string;
  /** `config.json`: hidden_size, max_position_embeddings. */
  configJson?: string;
  /** `modules.json`: lists a `Normalize` module when the model's embeddings are L2-normalised. */
  modulesJson?: string;
  /** `sentence_bert_config.json`: max_seq_length, the length the model was trained with. */
  sentenceBertConfigJson?: string;
}

/** Where each file lives in a repository or directory (the Hub layout). */
export const TEXT_BACKBONE_PATHS: Readonly<Record<keyof TextBackboneFiles, string>> = {
  model: 'onnx/model.onnx',
  tokenizerJson: 'tokenizer.json',
  tokenizerConfigJson: 'tokenizer_config.json',
  poolingConfigJson: '1_Pooling/config.json',
  configJson: 'config.json',
  modulesJson: 'modules.json',
  sentenceBertConfigJson: 'sentence_bert_config.json',
};

/** The paths a text backbone cannot do without; the others are read when present. */
export const REQUIRED_TEXT_BACKBONE_PATHS: readonly string[] = [
  TEXT_BACKBONE_PATHS.model,
  TEXT_BACKBONE_PATHS.tokenizerJson,
];
/** The paths read when present. */
export const OPTIONAL_TEXT_BACKBONE_PATHS: readonly string[] = Object.values(TEXT_BACKBONE_PATHS).filter(
  (p) => !REQUIRED_TEXT_BACKBONE_PATHS.includes(p),
);

/** Reads a sentence-transformer layout from a directory; a missing required file throws BACKBONE_NOT_FOUND. */
export async function readTextBackboneDir(dir: string): Promise<TextBackboneFiles> {
  const read = async (relative: string): Promise<Buffer | undefined> => {
    try {
      return await readFile(path.join(dir, relative));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  };
  const [model, tokenizerJson] = await Promise.all([
    read(TEXT_BACKBONE_PATHS.model),
    read(TEXT_BACKBONE_PATHS.tokenizerJson),
  ]);
  if (!model || !tokenizerJson) {
    const missing = REQUIRED_TEXT_BACKBONE_PATHS.filter((_, i) => !(i === 0 ? model : tokenizerJson));
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `The directory ${dir} is not a sentence-transformer layout: ${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} missing (expected ${REQUIRED_TEXT_BACKBONE_PATHS.join(' and ')}, as on the Hugging Face Hub).`,
      { details: { dir, missing } },
    );
  }
  const files: TextBackboneFiles = {
    model: new Uint8Array(model),
    tokenizerJson: tokenizerJson.toString('utf8'),
  };
  const optional = [
    'tokenizerConfigJson',
    'poolingConfigJson',
    'configJson',
    'modulesJson',
    'sentenceBertConfigJson',
  ] as const;
  for (const key of optional) {
    const content = await read(TEXT_BACKBONE_PATHS[key]);
    if (content) files[key] = content.toString('utf8');
  }
  return files;
}

export interface LoadTextBackboneOptions {
  /** The backbone's name in Graft (a key segment: lowercase letters, digits, '-'). */
  name: string;
  /** @default true when modules.json lists a Normalize module (2_Normalize), otherwise false */
  normalize?: boolean;
  /** A smaller token budget than the model allows (faster); never raises the model's own limit. */
  maxLength?: number;
  /** @default what 1_Pooling/config.json says; mean when it is absent */
  pooling?: 'mean' | 'cls';
}

/** A text backbone: tokenizer in TypeScript, encoder + pooling (+ normalisation) in `graph`. */
export interface TextBackbone extends DenseBackbone<string> {
  readonly config: TextBackboneConfig;
  /** Tokens the backbone sees for a text, special tokens included, after truncation (usage figures). */
  countTokens(text: string): number;
}

/**
 * Loads a sentence-transformer layout: checks the files, settles pooling, normalisation and the token budget,
 * and builds the backbone graph (the encoder with pooling appended, one output `features` [N, dims]).
 * Bad files throw INVALID_OPTIONS saying which file and what is wrong.
 */
export async function loadTextBackbone(
  files: TextBackboneFiles,
  options: LoadTextBackboneOptions,
): Promise<TextBackbone> {
  const { name } = options;
  if (!NAME_PATTERN.test(name)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Invalid backbone name ${JSON.stringify(name)}: use 1-63 lowercase letters, digits or '-'.`,
    );
  }
  const tokenizerJson = parseJsonFile<Record<string, unknown>>(files.tokenizerJson, 'tokenizer.json');
  const tokenizerConfig = parseJsonFile<Record<string, unknown>>(
    files.tokenizerConfigJson,
    'tokenizer_config.json',
  );
  const modelConfig = parseJsonFile<Record<string, unknown>>(files.configJson, 'config.json');
  const poolingConfig = parseJsonFile<Record<string, unknown>>(
    files.poolingConfigJson,
    '1_Pooling/config.json',
  );
  const modules = parseJsonFile<unknown>(files.modulesJson, 'modules.json');
  const sbertConfig = parseJsonFile<Record<string, unknown>>(
    files.sentenceBertConfigJson,
    'sentence_bert_config.json',
  );

  const pooling = options.pooling ?? poolingFromConfig(poolingConfig);
  const normalize = options.normalize ?? listsNormalize(modules);
  const built = buildTextGraph(files.model, { pooling, normalize });
  checkDims(built.dims, modelConfig?.hidden_size, 'config.json hidden_size');
  checkDims(
    built.dims,
    poolingConfig?.word_embedding_dimension,
    '1_Pooling/config.json word_embedding_dimension',
  );

  const tokenizer = buildTokenizer(tokenizerJson, tokenizerConfig ?? {});
  const maxLength = resolveMaxLength({
    modelMaxLength: tokenizerConfig?.model_max_length,
    maxPositions: maxUsablePositions(modelConfig),
    maxSeqLength: sbertConfig?.max_seq_length,
    option: options.maxLength,
    specialTokens: tokenizer.specialCount,
  });

  const config: TextBackboneConfig = {
    kind: 'text',
    name,
    dims: built.dims,
    maxLength,
    pooling,
    normalize,
    inputNames: built.inputNames,
    sha256: createHash('sha256').update(files.model).digest('hex'),
  };
  const text = textTokenizerFrom(tokenizer, config);
  return {
    config,
    dims: config.dims,
    graph: built.graph,
    prepare: text.prepare,
    countTokens: text.countTokens,
  };
}

/** Turns texts into the backbone graph's token inputs; rebuilt from a stored config and its tokenizer.json. */
export interface TextTokenizer {
  /** Token ids of one text with special tokens, truncated to `maxLength` (the last special token kept). */
  encode(text: string): { ids: number[]; typeIds: number[] };
  /** A batch padded to its longest text: int64 [N, L] tensors named as `config.inputNames`. */
  prepare(texts: readonly string[]): Record<string, InputTensor>;
  countTokens(text: string): number;
}

/**
 * Rebuilds the tokenisation of a stored text backbone (serving needs the config and tokenizer.json, not the
 * original model). Throws INVALID_OPTIONS when the tokenizer files cannot be read.
 */
export function createTextTokenizer(
  config: TextBackboneConfig,
  files: { tokenizerJson: string; tokenizerConfigJson?: string },
): TextTokenizer {
  const tokenizerJson = parseJsonFile<Record<string, unknown>>(files.tokenizerJson, 'tokenizer.json');
  const tokenizerConfig = parseJsonFile<Record<string, unknown>>(
    files.tokenizerConfigJson,
    'tokenizer_config.json',
  );
  return textTokenizerFrom(buildTokenizer(tokenizerJson, tokenizerConfig ?? {}), config);
}

export interface EmbedTextsOptions {
  /** Texts per ONNX Runtime call. @default 32 */
  batchSize?: number;
  /** Called after each batch with the texts done so far and the total (job progress). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Runs a text backbone over many texts in batches and returns one feature vector per text, in input order.
 * Texts are batched by length (longest first) so that a batch pads little and the largest batch runs first.
 */
export async function embedTexts(
  backbone: Pick<TextBackbone, 'prepare' | 'dims'>,
  session: Pick<OnnxSession, 'run'>,
  texts: readonly string[],
  { batchSize = 32, onProgress }: EmbedTextsOptions = {},
): Promise<Float32Array[]> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new GraftError('INVALID_OPTIONS', `batchSize must be a positive integer; got ${batchSize}.`);
  }
  const order = texts.map((_, i) => i).sort((a, b) => lengthOf(texts[b]) - lengthOf(texts[a]) || a - b);
  const result = new Array<Float32Array>(texts.length);
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const batch = indices.map((i) => texts[i] as string);
    const outputs = await session.run(backbone.prepare(batch), [FEATURES_OUTPUT]);
    const features = outputs[FEATURES_OUTPUT];
    if (
      !features ||
      !(features.data instanceof Float32Array) ||
      features.data.length !== batch.length * backbone.dims
    ) {
      throw new GraftError(
        'INTERNAL',
        `The backbone returned no float32 "${FEATURES_OUTPUT}" [${batch.length}, ${backbone.dims}] output.`,
      );
    }
    const data = features.data;
    indices.forEach((textIndex, row) => {
      result[textIndex] = data.slice(row * backbone.dims, (row + 1) * backbone.dims);
    });
    onProgress?.(Math.min(start + batchSize, order.length), order.length);
  }
  return result;
}

const lengthOf = (text: unknown): number => (typeof text === 'string' ? text.length : 0);

// ---------------------------------------------------------------------------------------------------------------
// Tokenisation

interface LoadedTokenizer {
  tokenizer: Tokenizer;
  padId: number;
  /** Special tokens before and after the text in the single-sequence template ([CLS] $A [SEP]: 1 and 1). */
  prefix: number;
  suffix: number;
  specialCount: number;
}

function buildTokenizer(
  tokenizerJson: Record<string, unknown> | undefined,
  tokenizerConfig: Record<string, unknown>,
): LoadedTokenizer {
  if (!tokenizerJson) throw new GraftError('INVALID_OPTIONS', 'tokenizer.json is required.');
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `tokenizer.json could not be loaded: ${err instanceof Error ? err.message : String(err)}.`,
      { cause: err },
    );
  }
  // Where the template puts its special tokens around a text: found by post-processing a lone sentinel, so that
  // truncation can cut the text and keep the closing [SEP], as the Rust tokenizers do.
  const sentinel = '\u0000graft-sentinel\u0000';
  const processed = tokenizer.post_processor?.post_process([sentinel], null, true)?.tokens ?? [sentinel];
  const at = processed.indexOf(sentinel);
  const prefix = Math.max(at, 0);
  const suffix = at < 0 ? 0 : processed.length - at - 1;
  return {
    tokenizer,
    padId: resolvePadId(tokenizer, tokenizerJson, tokenizerConfig),
    prefix,
    suffix,
    specialCount: prefix + suffix,
  };
}

function resolvePadId(
  tokenizer: Tokenizer,
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
): number {
  const configured = tokenizerConfig.pad_token;
  const padToken =
    typeof configured === 'string'
      ? configured
      : typeof (configured as { content?: unknown } | undefined)?.content === 'string'
        ? (configured as { content: string }).content
        : undefined;
  const fromConfig = padToken === undefined ? undefined : tokenizer.token_to_id(padToken);
  const padding = tokenizerJson.padding as { pad_id?: unknown } | null | undefined;
  const fromJson = typeof padding?.pad_id === 'number' ? padding.pad_id : undefined;
  // Pads are masked out of attention and pooling, so the id only has to be a valid one.
  return fromConfig ?? fromJson ?? tokenizer.token_to_id('[PAD]') ?? tokenizer.token_to_id('<pad>') ?? 0;
}

function textTokenizerFrom(loaded: LoadedTokenizer, config: TextBackboneConfig): TextTokenizer {
  const { tokenizer, padId, prefix, suffix } = loaded;
  const { maxLength, inputNames } = config;
  if (maxLength <= prefix + suffix) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `maxLength ${maxLength} leaves no room for text next to the ${prefix + suffix} special tokens.`,
    );
  }
  const encode = (text: string) => {
    if (typeof text !== 'string') {
      throw new GraftError('INVALID_OPTIONS', `Every input must be a string; got ${typeof text}.`);
    }
    const encoding = tokenizer.encode(text, { add_special_tokens: true, return_token_type_ids: true });
    const ids = encoding.ids;
    const typeIds = encoding.token_type_ids ?? new Array<number>(ids.length).fill(0);
    if (ids.length <= maxLength) return { ids, typeIds };
    // Cut the text, keep the template's special tokens on both sides (sentence-transformers' truncation).
    const keep = maxLength - prefix - suffix;
    const cut = <T>(values: T[]): T[] => [
      ...values.slice(0, prefix + keep),
      ...values.slice(values.length - suffix),
    ];
    return { ids: cut(ids), typeIds: cut(typeIds) };
  };
  const prepare = (texts: readonly string[]): Record<string, InputTensor> => {
    if (texts.length === 0) throw new GraftError('INVALID_OPTIONS', 'prepare needs at least one text.');
    const encoded = texts.map(encode);
    const width = Math.max(...encoded.map((e) => e.ids.length));
    const dims = [texts.length, width];
    const inputIds = new BigInt64Array(texts.length * width).fill(BigInt(padId));
    const attentionMask = new BigInt64Array(texts.length * width);
    const tokenTypeIds = new BigInt64Array(texts.length * width);
    encoded.forEach(({ ids, typeIds }, row) => {
      const offset = row * width;
      for (let j = 0; j < ids.length; j++) {
        inputIds[offset + j] = BigInt(ids[j] as number);
        attentionMask[offset + j] = 1n;
        tokenTypeIds[offset + j] = BigInt(typeIds[j] ?? 0);
      }
    });
    const all: Record<TextInputName, InputTensor> = {
      input_ids: { type: 'int64', data: inputIds, dims },
      attention_mask: { type: 'int64', data: attentionMask, dims },
      token_type_ids: { type: 'int64', data: tokenTypeIds, dims },
    };
    return Object.fromEntries(inputNames.map((n) => [n, all[n]]));
  };
  return { encode, prepare, countTokens: (text) => encode(text).ids.length };
}

// Hugging Face writes int(1e30) as model_max_length when a tokenizer has no limit of its own.
const NO_LIMIT = 1e12;

function resolveMaxLength(sources: {
  modelMaxLength: unknown;
  maxPositions: number | undefined;
  maxSeqLength: unknown;
  option: number | undefined;
  specialTokens: number;
}): number {
  const { option, specialTokens } = sources;
  if (option !== undefined && (!Number.isInteger(option) || option <= specialTokens)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `maxLength must be an integer above ${specialTokens} (the special tokens); got ${option}.`,
    );
  }
  const limits = [sources.modelMaxLength, sources.maxPositions, sources.maxSeqLength, option].filter(
    (v): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0 && v < NO_LIMIT,
  );
  if (limits.length === 0) {
    throw new GraftError(
      'INVALID_OPTIONS',
      'The model states no maximum length (tokenizer_config.json model_max_length, config.json max_position_embeddings or sentence_bert_config.json max_seq_length): pass maxLength.',
    );
  }
  return Math.min(...limits);
}

function maxUsablePositions(modelConfig: Record<string, unknown> | undefined): number | undefined {
  const positions = modelConfig?.max_position_embeddings;
  if (typeof positions !== 'number') return undefined;
  // RoBERTa-family models number positions from padding_idx + 1, so two rows of the table are never used.
  const offsetFamilies = ['roberta', 'xlm-roberta', 'camembert', 'mpnet', 'longformer'];
  const offset = offsetFamilies.includes(String(modelConfig?.model_type)) ? 2 : 0;
  return positions - offset;
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration files

function parseJsonFile<T>(content: string | undefined, file: string): T | undefined {
  if (content === undefined) return undefined;
  try {
    return JSON.parse(content) as T;
  } catch (err) {
    throw new GraftError('INVALID_OPTIONS', `${file} is not valid JSON: ${(err as Error).message}.`, {
      cause: err,
    });
  }
}

function poolingFromConfig(config: Record<string, unknown> | undefined): 'mean' | 'cls' {
  if (!config) return 'mean';
  const modes = Object.entries(config)
    .filter(([key, value]) => key.startsWith('pooling_mode_') && value === true)
    .map(([key]) => key.slice('pooling_mode_'.length));
  if (modes.length === 1 && modes[0] === 'mean_tokens') return 'mean';
  if (modes.length === 1 && modes[0] === 'cls_token') return 'cls';
  throw new GraftError(
    'INVALID_OPTIONS',
    `1_Pooling/config.json asks for pooling ${modes.length === 0 ? '(none)' : modes.join(' + ')}; Graft supports mean_tokens or cls_token alone (pass pooling to override).`,
  );
}

function listsNormalize(modules: unknown): boolean {
  return (
    Array.isArray(modules) &&
    modules.some((m) => typeof m?.type === 'string' && m.type.endsWith('.Normalize'))
  );
}

function checkDims(dims: number, stated: unknown, where: string): void {
  if (typeof stated === 'number' && stated !== dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `The model's hidden states are ${dims} wide but ${where} says ${stated}: the files do not belong together.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Graph surgery: encoder -> pooling (-> L2 normalisation) -> `features`

/**
 * Appends pooling (and optional L2 normalisation) to an encoder's ONNX graph and keeps one output, `features`
 * [N, dims]: mean = sum(h * mask) / max(sum(mask), 1e-9), or the first token; normalised x / max(||x||, 1e-12).
 * Other outputs (pooler_output...) and the nodes only they needed are removed. The appended nodes are written for
 * the model's own opset (`axes` as attribute before 13, as input from 13), so no existing node changes meaning.
 */
export function buildTextGraph(
  modelBytes: Uint8Array,
  { pooling, normalize }: { pooling: 'mean' | 'cls'; normalize: boolean },
): { graph: Uint8Array; dims: number; inputNames: TextInputName[] } {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (err) {
    throw new GraftError('INVALID_OPTIONS', 'onnx/model.onnx is not a valid ONNX model.', { cause: err });
  }
  // Decoded messages are class instances: their repeated fields are arrays, never null.
  const graph = model.graph as onnxProto.onnx.GraphProto | null | undefined;
  if (!graph) throw new GraftError('INVALID_OPTIONS', 'onnx/model.onnx has no graph.');
  if (graph.initializer.some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      'onnx/model.onnx keeps its weights in external data files; Graft needs a single-file model (under 2 GB).',
    );
  }
  const opsetEntry = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  const opset = Number(opsetEntry?.version ?? 0);
  if (opset < 8) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx uses opset ${opset}; Graft needs opset 8 or later.`,
    );
  }

  const outputNames = graph.output.map((o) => o.name ?? '');
  const hidden = graph.output.find((o) => HIDDEN_STATE_OUTPUTS.includes(o.name ?? ''));
  if (!hidden) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx has no ${HIDDEN_STATE_OUTPUTS.join(' or ')} output (it has ${outputNames.join(', ') || 'none'}): export it for feature extraction.`,
    );
  }
  const hiddenType = hidden.type?.tensorType;
  if (hiddenType?.elemType !== onnx.TensorProto.DataType.FLOAT) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx's ${hidden.name} must be float32 (use the fp32 model.onnx).`,
    );
  }
  const shape = hiddenType.shape?.dim ?? [];
  const width = shape.length === 3 ? shape[2]?.dimValue : undefined;
  const dims = width === undefined || width === null ? 0 : Number(width);
  if (!(dims > 0)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx's ${hidden.name} must be [batch, sequence, hidden] with a fixed hidden size.`,
    );
  }

  const hiddenName = hidden.name ?? '';
  const initializers = new Set(graph.initializer.map((t) => t.name ?? ''));
  const modelInputs = graph.input.filter((i) => !initializers.has(i.name ?? ''));
  const unknown = modelInputs
    .map((i) => i.name ?? '')
    .filter((n) => !(TEXT_INPUT_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx takes inputs Graft cannot feed: ${unknown.join(', ')} (it feeds ${TEXT_INPUT_NAMES.join(', ')}).`,
    );
  }
  const taken = new Set([
    ...graph.node.flatMap((n) => n.output ?? []),
    ...initializers,
    ...graph.input.map((i) => i.name ?? ''),
  ]);
  if (taken.has(FEATURES_OUTPUT)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `onnx/model.onnx already has a tensor named "${FEATURES_OUTPUT}".`,
    );
  }

  const b = new NodeAppender(graph, opset, 'graft/pooling');
  let pooled: string;
  if (pooling === 'mean') {
    const mask = b.node('Cast', ['attention_mask'], [attrInt('to', onnx.TensorProto.DataType.FLOAT)]);
    const mask3 = b.unsqueeze(mask, [2]);
    const summed = b.reduceSum(b.node('Mul', [hiddenName, mask3]), [1], 0);
    const count = b.reduceSum(mask3, [1], 0);
    pooled = b.node('Div', [summed, b.node('Max', [count, b.scalar('min_count', 1e-9)])]);
  } else {
    pooled = b.node('Gather', [hiddenName, b.int64Scalar('first_token', 0)], [attrInt('axis', 1)]);
  }
  if (normalize) {
    const norm = b.node('Sqrt', [b.reduceSum(b.node('Mul', [pooled, pooled]), [1], 1)]);
    b.node('Div', [pooled, b.node('Max', [norm, b.scalar('min_norm', 1e-12)])], [], FEATURES_OUTPUT);
  } else {
    b.node('Identity', [pooled], [], FEATURES_OUTPUT);
  }

  const batchDim = graph.input.find((i) => i.name === 'input_ids')?.type?.tensorType?.shape?.dim?.[0];
  const batch = batchDim?.dimParam ? { dimParam: batchDim.dimParam } : { dimParam: 'batch_size' };
  graph.output = [
    {
      name: FEATURES_OUTPUT,
      type: {
        tensorType: {
          elemType: onnx.TensorProto.DataType.FLOAT,
          shape: { dim: [batch, { dimValue: dims }] },
        },
      },
    },
  ];
  const needed = prune(graph);
  // A model that ignores the mask (rare) still gets it as an input when mean pooling needs it.
  if (needed.has('attention_mask') && !graph.input.some((i) => i.name === 'attention_mask')) {
    const like = graph.input.find((i) => i.name === 'input_ids');
    graph.input.push({ ...like, name: 'attention_mask' });
  }
  graph.input = graph.input.filter((i) => needed.has(i.name ?? ''));
  const inputNames = TEXT_INPUT_NAMES.filter((n) => graph.input.some((i) => i.name === n));
  if (!inputNames.includes('input_ids')) {
    throw new GraftError('INVALID_OPTIONS', 'onnx/model.onnx does not take input_ids.');
  }
  return { graph: onnx.ModelProto.encode(model).finish(), dims, inputNames };
}

/** Drops the nodes, initializers, inputs and value infos no output depends on; returns the names still used. */
function prune(graph: GraphProto): Set<string> {
  const needed = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const nodes = graph.node ?? [];
  const kept: NodeProto[] = [];
  // ONNX keeps nodes in topological order, so one backward sweep finds everything an output depends on.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i] as NodeProto;
    if (!(node.output ?? []).some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const input of node.input ?? []) if (input) needed.add(input);
    for (const name of subgraphReferences(node)) needed.add(name);
  }
  graph.node = kept.reverse();
  graph.initializer = (graph.initializer ?? []).filter((t) => needed.has(t.name ?? ''));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => needed.has(v.name ?? ''));
  return needed;
}

/** Names a node's subgraphs (If/Loop/Scan bodies) may read from the enclosing graph. */
function subgraphReferences(node: NodeProto): string[] {
  const graphs = (node.attribute ?? []).flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]);
  return graphs.flatMap((g) => (g.node ?? []).flatMap((n) => [...(n.input ?? []), ...subgraphReferences(n)]));
}

const attrInt = (name: string, i: number): onnxProto.onnx.IAttributeProto => ({
  name,
  type: onnx.AttributeProto.AttributeType.INT,
  i,
});

/** Appends nodes and constants to a decoded graph under a name prefix, in the form the graph's opset wants. */
class NodeAppender {
  #count = 0;
  constructor(
    private readonly graph: GraphProto,
    private readonly opset: number,
    private readonly prefix: string,
  ) {}

  node(
    opType: string,
    inputs: string[],
    attribute: onnxProto.onnx.IAttributeProto[] = [],
    output?: string,
  ): string {
    const name = `${this.prefix}/${opType}_${this.#count++}`;
    const out = output ?? `${name}/output_0`;
    this.graph.node?.push(onnx.NodeProto.create({ opType, name, input: inputs, output: [out], attribute }));
    return out;
  }

  scalar(label: string, value: number): string {
    return this.#constant(label, onnx.TensorProto.DataType.FLOAT, [], new Float32Array([value]));
  }

  int64Scalar(label: string, value: number): string {
    return this.#constant(label, onnx.TensorProto.DataType.INT64, [], BigInt64Array.of(BigInt(value)));
  }

  unsqueeze(input: string, axes: number[]): string {
    if (this.opset >= 13) return this.node('Unsqueeze', [input, this.#axes(axes)]);
    return this.node('Unsqueeze', [input], [ints('axes', axes)]);
  }

  reduceSum(input: string, axes: number[], keepdims: 0 | 1): string {
    if (this.opset >= 13)
      return this.node('ReduceSum', [input, this.#axes(axes)], [attrInt('keepdims', keepdims)]);
    return this.node('ReduceSum', [input], [ints('axes', axes), attrInt('keepdims', keepdims)]);
  }

  #axes(axes: number[]): string {
    return this.#constant(
      `axes_${axes.join('_')}`,
      onnx.TensorProto.DataType.INT64,
      [axes.length],
      BigInt64Array.from(axes.map(BigInt)),
    );
  }

  #constant(label: string, dataType: number, dims: number[], data: Float32Array | BigInt64Array): string {
    const name = `${this.prefix}/${label}`;
    if (!this.graph.initializer?.some((t) => t.name === name)) {
      const rawData = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      this.graph.initializer?.push(onnx.TensorProto.create({ name, dataType, dims, rawData }));
    }
    return name;
  }
}

const ints = (name: string, values: number[]): onnxProto.onnx.IAttributeProto => ({
  name,
  type: onnx.AttributeProto.AttributeType.INTS,
  ints: values,
});
